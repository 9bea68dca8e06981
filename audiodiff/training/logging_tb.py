"""TensorBoard logging of a training run (optional: needs `pip install "audiodiff[tensorboard]"`).

Events go to `<run>/tensorboard/`; watch them with `tensorboard --logdir runs`. Scalars
`train/loss`, `train/grad_norm`, `train/learning_rate`, `train/steps_per_s`, one
`val/<metric>` per validation metric; audio `val/audio` (what the EMA model made at
each validation) and `val/reference`; images `val/spectrogram` and
`val/reference_spectrogram` (ln-mel in dB, the model's mel settings, low bands at the
bottom); and the run's settings as text. Without the package installed (or with
`train.tensorboard = false`) every method does nothing; the trainer says so once.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from audiodiff.audio import DB_RANGE, spectrogram_db
from audiodiff.recipe import AudioConfig

#: Packages TensorBoard logging needs: the event writer, and PIL to encode images.
PACKAGES = ("tensorboard", "PIL")
INSTALL_HINT = 'pip install "audiodiff[tensorboard]"'
#: Anchors of the colour map of spectrogram images (magma-like: black, purple, orange, cream).
_COLOURS = np.array([[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]], dtype=np.float32) / 255


def tensorboard_missing() -> list[str]:
    """The packages TensorBoard logging needs that are not installed (empty: it can run)."""
    return [name for name in PACKAGES if importlib.util.find_spec(name) is None]


class TensorBoardLog:
    """Writes a run's scalars, audio and spectrogram images, or nothing when disabled."""

    def __init__(self, folder: str | Path, enabled: bool, audio: AudioConfig,
                 say: Callable[[str], None] = print, resume_step: int = 0):
        """`resume_step` > 0: events a killed run wrote after that step are hidden, since the
        resumed run writes them again (as metrics.jsonl is truncated)."""
        self.audio = audio
        self.writer = None
        if not enabled:
            return
        missing = tensorboard_missing()
        if missing:
            say(f"TensorBoard logging is off: {', '.join(missing)} not installed ({INSTALL_HINT})")
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder), purge_step=resume_step + 1 if resume_step else None)

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """One scalar per `tag: value` (tags such as 'train/loss')."""
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def text(self, step: int, tag: str, text: str) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

    def audio_and_spectrogram(self, step: int, audio_tag: str, image_tag: str, wav: torch.Tensor) -> None:
        """`wav` [samples] at the model's rate as audio `audio_tag` and its spectrogram as image `image_tag`."""
        if self.writer is None:
            return
        wav = torch.as_tensor(wav, dtype=torch.float32).detach().cpu().reshape(-1)
        self.writer.add_audio(audio_tag, wav.clamp(-1, 1).unsqueeze(0), step, sample_rate=self.audio.sample_rate)
        self.writer.add_image(image_tag, spectrogram_image(wav, self.audio), step, dataformats="CHW")

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def spectrogram_image(wav: torch.Tensor, audio: AudioConfig) -> torch.Tensor:
    """wav [samples] -> RGB image [3, n_mels, frames] in [0, 1]: the ln-mel in dB over the
    top `DB_RANGE` dB, colour-mapped, lowest band in the bottom row."""
    db = spectrogram_db(wav, audio)
    top = float(db.max())
    level = np.clip((db - (top - DB_RANGE)) / DB_RANGE, 0.0, 1.0)[::-1]  # [n_mels, frames], low bands last
    anchors = np.linspace(0.0, 1.0, len(_COLOURS))
    rgb = np.stack([np.interp(level, anchors, _COLOURS[:, c]) for c in range(3)])
    return torch.from_numpy(rgb.astype(np.float32))
