"""Data set layouts: a folder of audio, or LJSpeech (`metadata.csv` + `wavs/`)."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from audiodiff.audio import AUDIO_SUFFIXES
from audiodiff.errors import AudiodiffError
from audiodiff.recipe import DataConfig


@dataclass(frozen=True)
class Clip:
    """One audio file of a data set: its path, native rate and length in native samples."""
    path: Path
    sample_rate: int
    frames: int

    def samples_at(self, rate: int) -> int:
        return self.frames * rate // self.sample_rate


def find_clips(config: DataConfig) -> list[Path]:
    """The audio files of the data set, sorted. Raises AudiodiffError if there are none."""
    root = Path(config.root).expanduser()
    if not root.is_dir():
        raise AudiodiffError(f"data.root {root}: folder not found")
    if config.source == "ljspeech":
        paths = _ljspeech(root)
    else:
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not paths:
        raise AudiodiffError(f"data.root {root}: no audio files found (source {config.source!r})")
    return paths


def _ljspeech(root: Path) -> list[Path]:
    meta = root / "metadata.csv"
    if not meta.is_file():
        raise AudiodiffError(f"{meta}: not found (source 'ljspeech' expects metadata.csv and wavs/)")
    paths = []
    for line in meta.read_text(encoding="utf-8").splitlines():
        clip_id = line.split("|", 1)[0].strip()
        if not clip_id:
            continue
        for suffix in (".wav", ".flac"):
            if (root / "wavs" / f"{clip_id}{suffix}").is_file():
                paths.append(root / "wavs" / f"{clip_id}{suffix}")
                break
    return paths


def scan_clips(paths: list[Path], min_seconds: float, warn) -> list[Clip]:
    """Read each file's header; skip (with `warn(message)`) unreadable, empty or too-short ones."""
    clips = []
    for path in paths:
        try:
            info = sf.info(str(path))
        except Exception as exc:  # noqa: BLE001 - any header failure means the file is unusable
            warn(f"skipping {path}: unreadable ({str(exc).splitlines()[0] if str(exc) else 'error'})")
            continue
        if info.frames < max(1, min_seconds * info.samplerate):
            warn(f"skipping {path}: shorter than {min_seconds} s")
            continue
        clips.append(Clip(path, int(info.samplerate), int(info.frames)))
    if not clips:
        raise AudiodiffError("no usable audio files: every file was skipped")
    return clips


def split_clips(clips: list[Clip], count: int, seed: int, split_file: Path) -> tuple[list[Clip], list[Clip]]:
    """Deterministic (train, validation) split; stored in `split_file` and reused on resume."""
    by_path = {str(c.path): c for c in clips}
    if split_file.is_file():
        saved = json.loads(split_file.read_text())
        train = [by_path[p] for p in saved["train"] if p in by_path]
        val = [by_path[p] for p in saved["validation"] if p in by_path]
        return train, val
    order = sorted(by_path)
    random.Random(seed).shuffle(order)
    count = min(count, max(0, len(order) - 1))
    val, train = sorted(order[:count]), sorted(order[count:])
    split_file.parent.mkdir(parents=True, exist_ok=True)
    split_file.write_text(json.dumps({"train": train, "validation": val}, indent=1))
    return [by_path[p] for p in train], [by_path[p] for p in val]
