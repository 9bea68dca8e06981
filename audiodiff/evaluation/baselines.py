"""Reference points that give a vocoder's scores meaning: Griffin-Lim from the same mel
(a floor: phase reconstructed by iteration, no learning), in librosa's form and with
band gains (consistency.py), and white noise (the floor of set statistics for
unconditional models)."""
from __future__ import annotations

import numpy as np
import torch

from audiodiff.audio import MelSpectrogram, mel_magnitude
from audiodiff.consistency import MelConsistency
from audiodiff.recipe import AudioConfig

GRIFFIN_LIM_ITERS = 32


def mel_to_magnitude(mel, config: AudioConfig) -> np.ndarray:
    """Undo the preset's compression: [n_mels, frames] -> linear mel magnitude (float64)."""
    return mel_magnitude(torch.as_tensor(mel, dtype=torch.float64).cpu(), config).numpy()


def griffin_lim(mel, config: AudioConfig, length: int | None = None, n_iter: int = GRIFFIN_LIM_ITERS,
                seed: int = 0) -> np.ndarray:
    """Waveform from a mel made by `MelSpectrogram(config)`: invert the filterbank (NNLS),
    then Griffin-Lim phase retrieval (librosa), aligned with the input's framing.

    Returns float32 [length] (default frames * hop).
    """
    import librosa

    mag = mel_to_magnitude(mel, config)
    linear = librosa.feature.inverse.mel_to_stft(
        mag, sr=config.sample_rate, n_fft=config.n_fft, power=1.0, fmin=config.fmin, fmax=config.fmax,
        htk=config.mel_htk, norm="slaney" if config.mel_norm == "slaney" else None)
    frames = mag.shape[-1]
    out_len = frames * config.hop_length if length is None else length
    # MelSpectrogram's frame i starts at i*hop - left; librosa's centred frame at i*hop - n_fft//2.
    left = config.n_fft // 2 if config.center else (config.n_fft - config.hop_length) // 2
    shift = config.n_fft // 2 - left  # the input equals librosa's output delayed by `shift` samples
    y = librosa.griffinlim(linear.astype(np.float32), n_iter=n_iter, hop_length=config.hop_length,
                           win_length=config.win_length, n_fft=config.n_fft, window="hann", center=True,
                           random_state=np.random.default_rng(seed))
    # (librosa gives (frames - 1) * hop samples; the last hop is zero-padded below)
    y = np.concatenate([np.zeros(shift, dtype=y.dtype), y]) if shift >= 0 else y[-shift:]
    if len(y) < out_len:
        y = np.pad(y, (0, out_len - len(y)))
    return y[:out_len].astype(np.float32)


def band_griffin_lim(mel, config: AudioConfig, length: int | None = None, n_iter: int = GRIFFIN_LIM_ITERS,
                     seed: int = 0, transform: MelSpectrogram | None = None) -> np.ndarray:
    """Waveform from a mel with no network: fast Griffin-Lim from seeded white noise whose
    magnitude step rescales each mel band to the mel (`MelConsistency.refine`), instead
    of librosa's least-squares linear magnitude. `transform`: a MelSpectrogram of `config`
    to reuse (a vocoder's, on its device); else one is built. Returns float32 [length]
    (default frames * hop)."""
    transform = MelSpectrogram(config) if transform is None else transform
    device = transform.mel_basis.device
    mel = torch.as_tensor(mel, dtype=torch.float32)[None].to(device)
    samples = mel.shape[-1] * config.hop_length
    noise = 0.1 * torch.randn(1, samples, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        y = MelConsistency(transform, mel).refine(noise.to(device), n_iter)[0].clamp(-1.0, 1.0).cpu()
    out_len = samples if length is None else length
    y = torch.nn.functional.pad(y, (0, max(0, out_len - samples)))[:out_len]
    return y.numpy().astype(np.float32)


def white_noise(count: int, samples: int, rms: float, seed: int = 0) -> np.ndarray:
    """[count, samples] Gaussian white noise at the given RMS."""
    rng = np.random.default_rng(seed)
    return (rms * rng.standard_normal((count, samples))).astype(np.float32)
