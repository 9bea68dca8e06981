"""Mel consistency: make a waveform agree with the mel it was vocoded from.

A short-trained vocoder leaves noise its network did not remove, and the waveform's
own mel drifts from the conditioning mel. Two uses of one operation fix much of that:

- **gain adjustment** (WaveFit, Koizumi et al. 2022): at every sampling step the
  network's estimate of the clean signal x0 is rescaled, per mel band and frame, so that
  its mel magnitude equals the target's; the sampler continues from the adjusted
  estimate. One STFT and one inverse per step.
- **refinement**: after sampling, `iters` more of the same projection, each followed by
  the STFT of its own inverse: Griffin-Lim iterations, but started from the vocoder's
  phase and keeping the fine structure (harmonics) within each band instead of a flat
  least-squares inverse of the filterbank.

The gain of a linear bin is the filterbank-weighted mean of its bands' gains; bins the
filterbank does not cover (below fmin, above fmax) take the nearest covered bin's gain.
"""
from __future__ import annotations

import torch

from audiodiff.audio import MelSpectrogram, mel_magnitude

#: Mel magnitude floor: the presets' compression clamps at 1e-5 (ln) or -100 dB.
_FLOOR = 1e-5


class MelConsistency:
    """Projections onto waveforms whose mel matches `mel`.

    mel: [batch, n_mels, frames], the conditioning mel in the preset's compression.
    Waveforms are [batch, 1, samples] or [batch, samples] with samples <= frames * hop.
    """

    def __init__(self, transform: MelSpectrogram, mel: torch.Tensor):
        self.transform = transform
        cfg = transform.config
        basis = transform.mel_basis.to(mel.device)  # [n_mels, bins]
        self.basis = basis
        self.target = mel_magnitude(mel.float(), cfg)  # [batch, n_mels, frames], STFT-magnitude units
        cover = basis.sum(0)  # [bins]
        covered = torch.nonzero(cover > 0)[:, 0]
        nearest = (torch.arange(cover.numel(), device=cover.device)[:, None] - covered[None]).abs().argmin(1)
        self.weights = basis[:, covered[nearest]] / cover[covered[nearest]]  # [n_mels, bins], columns sum to 1

    def project(self, wav: torch.Tensor) -> torch.Tensor:
        """One gain adjustment: same shape as `wav`, its mel magnitude set to the target's."""
        shape = wav.shape
        x = wav.reshape(self.target.shape[0], -1)
        with torch.autocast(device_type=x.device.type, enabled=False):  # STFTs in float32 always
            return self._project(x.float(), x.shape[-1]).to(wav.dtype).reshape(shape)

    def _project(self, x: torch.Tensor, samples: int) -> torch.Tensor:
        spec = self.transform.stft(x)  # [batch, bins, frames]
        frames = min(spec.shape[-1], self.target.shape[-1])
        spec, target = spec[..., :frames], self.target[..., :frames]
        current = torch.matmul(self.basis, spec.abs())  # [batch, n_mels, frames]
        gain = target / current.clamp(min=_FLOOR)
        spec = spec * torch.matmul(self.weights.T, gain)  # band gains -> bin gains
        return self.transform.istft(spec, samples)

    def refine(self, wav: torch.Tensor, iters: int) -> torch.Tensor:
        """`iters` projections in a row (Griffin-Lim from the vocoder's phase)."""
        for _ in range(iters):
            wav = self.project(wav)
        return wav
