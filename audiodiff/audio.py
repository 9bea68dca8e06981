"""Audio I/O and the one mel spectrogram transform.

`load_audio` reads anything soundfile (or, failing that, librosa/audioread) can
decode, mixes to mono and resamples with soxr to the model's rate. `save_audio`
writes wav/flac atomically (temp file, then rename), so a killed run never leaves a
half-written file. `MelSpectrogram` is the only mel function in the package:
training, validation, vocoding of audio files and the tests all use it.
"""
from __future__ import annotations

import dataclasses
import errno
import warnings
from collections.abc import Sequence
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch
from torch import nn

from audiodiff.atomic import atomic_path
from audiodiff.errors import AudioError, first_line
from audiodiff.recipe import AudioConfig

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".au")
_SAVE_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16")}


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read an audio file as mono float32 at `sample_rate`: shape [samples].

    Raises AudioError naming the file if it is missing, unreadable or empty.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: file not found")
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
        wav = wav.mean(axis=1)
    except Exception:  # noqa: BLE001 - soundfile raises several types; fall back to librosa
        wav, sr = _load_with_librosa(path)
    if wav.size == 0:
        raise AudioError(f"{path}: audio file is empty")
    return resample(wav, sr, sample_rate)


def _load_with_librosa(path: Path) -> tuple[np.ndarray, int]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wav, sr = librosa.load(str(path), sr=None, mono=True)
    except Exception as exc:  # noqa: BLE001
        raise AudioError(f"{path}: cannot read audio ({first_line(exc)})") from None
    return wav.astype(np.float32), int(sr)


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample [samples] float32 audio with soxr (high quality); no-op if rates match."""
    if orig_sr == target_sr:
        return np.ascontiguousarray(wav, dtype=np.float32)
    out = librosa.resample(wav, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq")
    return out.astype(np.float32)


def output_format(path: str | Path) -> tuple[str, str]:
    """(format, subtype) soundfile writes for an output path; AudioError unless .wav/.flac."""
    fmt = _SAVE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise AudioError(f"{path}: output must end in .wav or .flac")
    return fmt


def save_audio(path: str | Path, wav: np.ndarray | torch.Tensor, sample_rate: int,
               fsync: bool = True) -> Path:
    """Write [samples] audio in [-1, 1] as 16-bit wav or flac, atomically.

    The file appears complete or not at all: it is written to a temp file in the same
    folder and renamed into place. A failed write (a full disk, no permission) raises
    OutputError naming the file.
    """
    path = Path(path)
    fmt = output_format(path)
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().float().cpu().numpy()
    wav = np.clip(np.asarray(wav, dtype=np.float32).reshape(-1), -1.0, 1.0)
    with atomic_path(path, fsync=fsync) as tmp:
        try:
            sf.write(tmp, wav, sample_rate, format=fmt[0], subtype=fmt[1])
        except sf.LibsndfileError as exc:
            if exc.code != _SFE_SYSTEM:  # a bad argument (e.g. a rate of 0): the caller's bug
                raise
            # an I/O error (a full disk, a file-size limit): atomic_path makes it an OutputError
            raise OSError(errno.EIO, f"libsndfile: {exc.error_string.strip()}") from None
    return path


#: libsndfile's error code for a failed system call (write, seek): what a full disk gives.
_SFE_SYSTEM = 2


class MelSpectrogram(nn.Module):
    """Log-mel spectrogram with the convention of an `AudioConfig` (a named preset).

    forward: [..., samples] float -> [..., n_mels, ceil(samples / hop_length)].
    Frame i describes samples [i*hop, (i+1)*hop): the signal is reflect-padded so that
    a vocoder turning F frames into F*hop samples lines up with the input. With
    `center=False` (HiFi-GAN) frame i is centred on the middle of its hop; with
    `center=True` (lmnt DiffWave, librosa) it is centred on sample i*hop.
    """

    def __init__(self, config: AudioConfig):
        super().__init__()
        self.config = config
        fmax = config.fmax
        basis = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels,
                                    fmin=config.fmin, fmax=fmax, htk=config.mel_htk,
                                    norm="slaney" if config.mel_norm == "slaney" else None)
        self.register_buffer("mel_basis", torch.from_numpy(basis).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)
        self._ola_norms: dict[tuple, torch.Tensor] = {}  # istft's window-square overlap-add, per length

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    def frames(self, samples: int) -> int:
        """Number of mel frames for a signal of `samples` samples."""
        return -(-samples // self.config.hop_length)

    def _pad(self) -> int:
        """Samples of padding before the signal: frame i starts at i * hop - _pad()."""
        cfg = self.config
        return (cfg.n_fft // 2 if cfg.center else (cfg.n_fft - cfg.hop_length) // 2)

    def stft(self, wav: torch.Tensor) -> torch.Tensor:
        """[..., samples] -> complex STFT [..., n_fft // 2 + 1, frames] framed exactly as
        the mel (frame i is mel frame i), without the normalisation of `normalized` presets."""
        cfg = self.config
        lead = wav.shape[:-1]
        x = wav.reshape(-1, wav.shape[-1])
        x = x if x.is_floating_point() else x.float()
        n_frames = self.frames(x.shape[-1])
        left = self._pad()
        right = (n_frames - 1) * cfg.hop_length + cfg.n_fft - x.shape[-1] - left
        mode = "reflect" if x.shape[-1] > max(left, right) else "constant"
        x = torch.nn.functional.pad(x.unsqueeze(1), (left, right), mode=mode).squeeze(1)
        spec = torch.stft(x, cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                          window=self.window.to(x.dtype), center=False, return_complex=True)
        return spec.reshape(*lead, *spec.shape[-2:])

    def istft(self, spec: torch.Tensor, samples: int) -> torch.Tensor:
        """Inverse of `stft`: complex [..., bins, frames] -> [..., samples] by weighted
        overlap-add (least squares for a modified spectrogram, as Griffin-Lim needs)."""
        cfg = self.config
        lead = spec.shape[:-2]
        spec = spec.reshape(-1, *spec.shape[-2:])
        frames = spec.shape[-1]
        offset = (cfg.n_fft - cfg.win_length) // 2  # torch.stft centres a short window in n_fft
        window = torch.nn.functional.pad(self.window.to(spec.real.dtype), (offset, cfg.n_fft - cfg.win_length - offset))
        chunks = torch.fft.irfft(spec, n=cfg.n_fft, dim=-2) * window[:, None]  # [B, n_fft, frames]
        total = (frames - 1) * cfg.hop_length + cfg.n_fft
        fold = dict(output_size=(1, total), kernel_size=(1, cfg.n_fft), stride=(1, cfg.hop_length))
        signal = torch.nn.functional.fold(chunks, **fold)[:, 0, 0]
        key = (frames, window.dtype, window.device)
        if key not in self._ola_norms:  # the same for every call of this length: chunked inference has 2-3 lengths
            if len(self._ola_norms) >= OLA_NORMS_KEPT:
                self._ola_norms.pop(next(iter(self._ola_norms)))  # the oldest length
            self._ola_norms[key] = torch.nn.functional.fold(
                (window ** 2)[None, :, None].expand(1, -1, frames), **fold)[0, 0, 0].clamp(min=1e-8)
        norm = self._ola_norms[key]
        left = self._pad()
        out = signal[:, left:left + samples] / norm[left:left + samples]
        if out.shape[-1] < samples:
            out = torch.nn.functional.pad(out, (0, samples - out.shape[-1]))
        return out.reshape(*lead, samples)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = self.stft(wav.float()).abs()
        if self.config.normalized:
            spec = spec / window_norm(self.config)
        return self.compress(torch.matmul(self.mel_basis, spec))

    def compress(self, mel: torch.Tensor) -> torch.Tensor:
        """Linear mel magnitude -> the preset's log scale."""
        if self.config.compression == "ln":
            return torch.log(torch.clamp(mel, min=MEL_FLOOR))
        db = 20 * torch.log10(torch.clamp(mel, min=MEL_FLOOR)) - 20
        return torch.clamp((db + 100) / 100, 0.0, 1.0)


#: Overlap-add norms `MelSpectrogram.istft` keeps, one per signal length: a chunked pass
#: uses a whole chunk, a last chunk and a margin-trimmed first chunk.
OLA_NORMS_KEPT = 4

#: The smallest linear mel magnitude `MelSpectrogram.compress` keeps (both presets).
MEL_FLOOR = 1e-5


def window_norm(config: AudioConfig) -> float:
    """L2 norm of the analysis window: what `normalized` presets divide the STFT by."""
    return float(torch.hann_window(config.win_length).pow(2).sum().sqrt())


def mel_magnitude(mel: torch.Tensor, config: AudioConfig) -> torch.Tensor:
    """Undo the preset's compression: mel [..., n_mels, frames] -> linear mel magnitude
    (the filterbank applied to the STFT magnitude, as MelSpectrogram had it before the
    log), without the window normalisation of `normalized` presets."""
    mel = torch.as_tensor(mel)
    if config.compression == "ln":
        mag = torch.exp(mel)
    else:  # db_unit: (20 log10(x) - 20 + 100) / 100, clamped to [0, 1]
        mag = 10.0 ** ((mel * 100.0 - 100.0 + 20.0) / 20.0)
    if config.normalized:  # MelSpectrogram divided the STFT by the window's L2 norm
        mag = mag * window_norm(config)
    return mag


def ln_mel_transform(config: AudioConfig) -> MelSpectrogram:
    """The model's mel settings with natural-log compression whatever its preset: the
    common scale of the metrics and report images, so numbers read the same for every recipe."""
    return MelSpectrogram(dataclasses.replace(config, compression="ln"))


#: Decibels below the loudest bin that a spectrogram picture shows (report images, TensorBoard).
DB_RANGE = 80.0


def spectrogram_db(wav: np.ndarray | torch.Tensor, config: AudioConfig) -> np.ndarray:
    """wav [samples] at the model's rate -> ln-mel magnitude in dB [n_mels, frames]: what
    the eval report's images and TensorBoard's spectrograms show, on one scale."""
    with torch.no_grad():
        ln = ln_mel_transform(config)(torch.as_tensor(wav, dtype=torch.float32).reshape(-1)).numpy()
    return ln * (20.0 / np.log(10.0))  # ln magnitude -> dB


def mel_clamps(config: AudioConfig) -> tuple[float, float | None]:
    """The values `MelSpectrogram.compress` clamps to: (floor, ceiling or None). A mel
    value at the floor says "this quiet or quieter", at the ceiling "this loud or louder"."""
    if config.compression == "ln":
        return float(np.log(MEL_FLOOR)), None
    return 0.0, 1.0


def mel_value_range(config: AudioConfig) -> tuple[float, float]:
    """The range a mel made with `config` can take (with a small tolerance); ln mels have
    no ceiling, so 12 (a magnitude of 160000) stands in for one."""
    floor, ceiling = mel_clamps(config)
    if ceiling is None:
        return floor - 0.01, 12.0
    return floor - 1e-3, ceiling + 1e-3


def check_mel(mel: torch.Tensor, config: AudioConfig, name: str, checkpoint: str | None = None) -> None:
    """Raise AudioError unless `mel` is [n_mels, frames] (or batched) in the preset's range.

    The one-line message recognises the usual mistakes with mels from other tools and
    says how to fix each: a transposed [frames, n_mels] array, a log10 or a dB mel, a
    natural-log mel with a lower floor, a linear one (see `mel_scale_hint`); and it names
    the `audiodiff mel` command (with `-c checkpoint` when given) that writes the model's
    own mel of an audio file, to compare with.
    """
    compare = compare_hint(checkpoint)
    n = config.n_mels
    if mel.dim() not in (2, 3) or mel.shape[-2] != n:
        shape = list(mel.shape)
        if mel.dim() in (2, 3) and mel.shape[-1] == n:
            raise AudioError(f"{name}: mel has shape {shape}: it looks transposed, [frames, n_mels]; transpose it "
                             f"to [{n}, frames] (mel.T in numpy, mel.mT in torch); {compare}")
        raise AudioError(f"{name}: mel has shape {shape}, expected [{n}, frames] (preset {config.preset}); {compare}")
    if mel.shape[-1] == 0:
        raise AudioError(f"{name}: mel has no frames")
    if not torch.isfinite(mel).all():
        raise AudioError(f"{name}: mel contains NaN or infinite values")
    low, high = mel_value_range(config)
    lo, hi = float(mel.min()), float(mel.max())
    scale = f"preset {config.preset!r} ({config.compression} scale)"
    outside = lo < low or hi > high
    hint = mel_scale_hint(mel, config)
    if outside:
        raise AudioError(f"{name}: mel values span [{lo:.3g}, {hi:.3g}], outside [{low:.3g}, {high:.3g}] for {scale}: "
                         f"{hint or 'made with another convention?'}; {compare}")
    if hint:
        raise AudioError(f"{name}: mel values span [{lo:.3g}, {hi:.3g}], not those of {scale}: {hint}; {compare}")


def compare_hint(checkpoint: str | None = None) -> str:
    """The end of a mel error: the command that writes the model's own mel to compare with."""
    option = f" -c {checkpoint}" if checkpoint else ""
    return f"compare with the model's own mel: `audiodiff mel IN.wav -o mel.npy{option}`"


LN10 = float(np.log(10.0))


def mel_scale_hint(mel: torch.Tensor, config: AudioConfig) -> str | None:
    """What a mel of the right shape but not of `config`'s log scale looks like, and how to
    convert it; None when it looks like the preset's own.

    For natural-log presets (HiFi-GAN's `log(max(x, 1e-5))`): decibels (a wide range,
    e.g. -100..20), a log10 mel (a range about ln(10) = 2.3x narrower: at or above
    log10(1e-5) = -5 with a speech-like spread, or a pile of values at a log10 floor of
    -5 or -10), a natural-log mel with a lower floor, a linear (not log) mel. Stationary
    noise has a narrow range in any scale, so a narrow range alone never counts: a mel
    whose middle 98% spans less than 2.8 (ln white noise: about 1.7; a log10 speech mel:
    3.3 or more) is taken as it is.
    """
    values = mel.detach().float().reshape(-1).cpu().numpy()
    if values.size > 2_000_000:  # the quantiles of a sample are enough
        values = values[::values.size // 1_000_000]
    lo, hi = float(values.min()), float(values.max())
    p1, p99 = (float(v) for v in np.percentile(values, [1.0, 99.0]))
    low, high = mel_value_range(config)
    floor = float(np.log(MEL_FLOOR))
    db = ("they look like decibels (20*log10 of the magnitude, or 10*log10 of the power; a dB mel made against a "
          "reference level, ref=np.max or ref_level_db, has lost its absolute level)")
    if config.compression != "ln":  # db_unit: (20 log10(x) + 80) / 100, clipped to [0, 1]
        convert = f"preset {config.preset!r} wants (20*log10(magnitude) + 80) / 100, clipped to [0, 1]"
        if hi - lo > 20:
            return f"{db}; {convert}"
        if lo < low and hi <= 12:
            return f"they look like a natural-log mel (HiFi-GAN's convention); {convert}"
        return None
    # a natural-log mel with a lower floor (Vocos: log(1e-7) = -16.1, log(x + 2^-24) = -16.6, log(1e-10) = -23):
    # most values in range, often a pile of them at the floor; a dB mel spans more and reaches lower
    lower_floor = low - 15 <= lo < low and (hi - lo <= 20 or np.mean(values <= lo + 1e-3) >= 0.005)
    if (lo < low and not lower_floor) or (hi > high and lo < 0):
        return (f"{db}; for this natural-log scale divide by 20 and multiply by ln(10) (mel * 0.1151), "
                f"then clamp at ln(1e-5) = {floor:.2f}")
    if lo < low:
        return (f"below this scale's floor ln(1e-5) = {floor:.2f}: a natural-log mel with a lower floor (e.g. "
                f"log(1e-7))? clamp it: np.maximum(mel, np.log(1e-5))")
    if lo >= 0 and hi > 0:
        return ("all values are >= 0, where a natural-log mel of audio in [-1, 1] is mostly negative: a linear "
                "(not log) mel? take np.log(np.maximum(mel, 1e-5)); a normalised mel: undo its normalisation")
    at_floor = next((f for f in (-5.0, -10.0) if abs(lo - f) <= 2e-3), None)
    piled = at_floor is not None and np.mean(values <= lo + 2e-3) >= 0.005 and p99 - lo >= 1.5
    if piled or (lo >= -5.0 - 0.01 and p99 - p1 >= 2.8 and hi <= 1.6):
        shown = f" with its floor at log10(1e-{-at_floor:.0f}) = {at_floor:.0f}" if piled else ""
        clamp = f", then clamp at ln(1e-5) = {floor:.2f}" if at_floor == -10.0 else ""
        return (f"they look like a log10 mel{shown} (about ln(10) = 2.3x narrower than this natural-log scale); "
                f"multiply it by ln(10) = {LN10:.4f}{clamp}")
    return None


MEL_SUFFIXES = (".npy", ".pt")


def load_mel(path: str | Path) -> torch.Tensor:
    """Read a mel spectrogram saved as .npy or .pt: [n_mels, frames] (a leading 1 is dropped)."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: file not found")
    try:
        if path.suffix.lower() == ".npy":
            mel = torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
        else:
            mel = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - numpy and torch raise many types for bad files
        raise AudioError(f"{path}: cannot read mel ({first_line(exc, 100)})") from None
    if not isinstance(mel, torch.Tensor):
        raise AudioError(f"{path}: expected a tensor, found {type(mel).__name__}")
    if mel.dim() == 3 and mel.shape[0] == 1:
        mel = mel[0]
    if mel.dim() != 2:
        raise AudioError(f"{path}: mel has shape {list(mel.shape)}, expected [n_mels, frames]")
    return mel.float()


def mel_output_format(path: str | Path) -> str:
    """The suffix a mel is written with (.npy or .pt); AudioError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in MEL_SUFFIXES:
        raise AudioError(f"{path}: a mel is written as .npy (float32) or .pt (a tensor)")
    return suffix


def save_mel(path: str | Path, mel: torch.Tensor | np.ndarray) -> Path:
    """Write a mel [n_mels, frames] as float32, .npy or .pt (what `load_mel` reads),
    atomically: a failed write raises OutputError naming the file and leaves nothing."""
    path = Path(path)
    suffix = mel_output_format(path)
    array = torch.as_tensor(mel).detach().float().cpu().contiguous()
    with atomic_path(path, write_errors=(RuntimeError,)) as tmp:  # torch.save's failed write: a RuntimeError
        if suffix == ".npy":
            with open(tmp, "wb") as f:  # np.save(path) would append .npy to the temp name
                np.save(f, array.numpy(), allow_pickle=False)
        else:
            torch.save(array.clone(), tmp)
    return path


def collect_files(paths: Sequence[str | Path], suffixes: Sequence[str] = AUDIO_SUFFIXES,
                  what: str = "audio files") -> list[Path]:
    """The input files a command line names: files as given, each folder expanded to the
    files below it whose suffix is one of `suffixes` (sorted). AudioError (one line naming
    the path) for a missing path or a folder with none of `what`, before any is read."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes)
            if not found:
                raise AudioError(f"{p}: no {what} ({', '.join(suffixes)}) in this folder")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise AudioError(f"{p}: file not found")
    return out
