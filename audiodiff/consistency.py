"""Mel consistency: make a waveform agree with the mel it was vocoded from.

A short-trained vocoder leaves noise its network did not remove, and the waveform's
own mel drifts from the conditioning mel. Two uses of one operation fix much of that:

- **gain adjustment** (WaveFit, Koizumi et al. 2022): at every sampling step the
  network's estimate of the clean signal x0 is rescaled, per mel band and frame, so that
  its mel magnitude equals the target's; the sampler continues from the adjusted
  estimate. One STFT and one inverse per step.
- **refinement**: after sampling, `iters` iterations of fast Griffin-Lim (Perraudin et
  al. 2013, momentum 0.99, as librosa) whose magnitude step is the same band-gain
  projection: started from the vocoder's output, keeping the fine structure (harmonics)
  within each band instead of a flat least-squares inverse of the filterbank.
  `band_griffin_lim` (evaluation/baselines.py) runs it from white noise: a mel
  inversion with no network, the floor a vocoder must beat.

The gain of a linear bin is the filterbank-weighted mean of its bands' gains; bins the
filterbank does not cover (below fmin, above fmax) take the nearest covered bin's gain.
Band gains blend across neighbouring bins and an inverse STFT of a modified spectrum is
not exactly consistent, so one projection brings the mel close to the target, not onto
it; repeating it converges. Mel values the preset clamped (its floor, and the diffwave
preset's 0 dB ceiling) are bounds, not values: a band at the floor is only attenuated,
one at the ceiling only amplified.
"""
from __future__ import annotations

import torch

from audiodiff.audio import MelSpectrogram, mel_clamps, mel_magnitude
from audiodiff.errors import AudiodiffError

#: Fast Griffin-Lim's momentum (librosa's default).
MOMENTUM = 0.99


def check_options(gain_adjust: bool | None, refine: int | None, conditional: bool = True, where: str = "") -> None:
    """The command line's `--gain-adjust/--no-gain-adjust` and `--refine` (None: not
    given): refine counts iterations, and only a vocoder has a mel to match, so an
    unconditional model (`conditional` False, named by `where`) takes neither."""
    if refine is not None and refine < 0:
        raise AudiodiffError(f"--refine {refine}: must be >= 0")
    if not conditional and (gain_adjust is not None or refine is not None):
        raise AudiodiffError(f"{where}: --gain-adjust/--no-gain-adjust and --refine apply to vocoders; "
                             f"this model is unconditional")


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
        floor, ceiling = mel_clamps(cfg)
        self.floor = float(mel_magnitude(torch.tensor(floor), cfg))  # the smallest magnitude a mel holds
        self.at_floor = mel <= floor + 1e-6
        self.at_ceiling = mel >= ceiling - 1e-6 if ceiling is not None else torch.zeros_like(self.at_floor)
        cover = basis.sum(0)  # [bins]
        covered = torch.nonzero(cover > 0)[:, 0]
        nearest = (torch.arange(cover.numel(), device=cover.device)[:, None] - covered[None]).abs().argmin(1)
        self.weights = basis[:, covered[nearest]] / cover[covered[nearest]]  # [n_mels, bins], columns sum to 1

    def project(self, wav: torch.Tensor) -> torch.Tensor:
        """One gain adjustment: same shape as `wav`, its mel magnitude brought (close) to the target's."""
        shape = wav.shape
        x = wav.reshape(self.target.shape[0], -1)
        with torch.autocast(device_type=x.device.type, enabled=False):  # STFTs in float32 always
            out = self.transform.istft(self._gain(self.transform.stft(x.float())), x.shape[-1])
        return out.to(wav.dtype).reshape(shape)

    def _gain(self, spec: torch.Tensor) -> torch.Tensor:
        """complex STFT [batch, bins, frames] -> the same with band gains applied."""
        frames = spec.shape[-1]
        if frames > self.target.shape[-1]:
            raise ValueError(f"waveform of {frames} frames is longer than the mel's {self.target.shape[-1]}")
        target = self.target[..., :frames]
        current = torch.matmul(self.basis, spec.abs())  # [batch, n_mels, frames]
        gain = target / current.clamp(min=self.floor)
        gain = torch.where(self.at_floor[..., :frames], gain.clamp(max=1.0), gain)
        gain = torch.where(self.at_ceiling[..., :frames], gain.clamp(min=1.0), gain)
        return spec * torch.matmul(self.weights.T, gain)  # band gains -> bin gains

    def refine(self, wav: torch.Tensor, iters: int, momentum: float = MOMENTUM) -> torch.Tensor:
        """`iters` fast Griffin-Lim iterations from `wav` with the band-gain projection as
        the magnitude step; then a last projection. Same shape as `wav`."""
        if iters <= 0:
            return wav
        shape = wav.shape
        x = wav.reshape(self.target.shape[0], -1)
        samples, stft, istft = x.shape[-1], self.transform.stft, self.transform.istft
        with torch.autocast(device_type=x.device.type, enabled=False):
            accelerated = stft(x.float())
            previous = None
            for _ in range(iters):
                consistent = stft(istft(self._gain(accelerated), samples))
                accelerated = consistent if previous is None else consistent + momentum * (consistent - previous)
                previous = consistent
            out = istft(self._gain(accelerated), samples)
        return out.to(wav.dtype).reshape(shape)
