"""Multi-resolution STFT distance (Parallel WaveGAN's auxiliary loss), defined once.

`audiodiff eval` reports it as a metric (evaluation/metrics.py) and training can add
it, on the network's estimate of the clean signal, to the noise loss (diffusion.py):
the same function, differentiable, batched over leading dimensions.
"""
from __future__ import annotations

import torch

MR_STFT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))  # (n_fft, hop, win)


def stft_magnitude(x: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    """|STFT| of x [..., samples] -> [..., n_fft // 2 + 1, frames], floored at sqrt(1e-7) so logs stay finite."""
    spec = torch.stft(x.reshape(-1, x.shape[-1]), n_fft, hop_length=hop, win_length=win,
                      window=torch.hann_window(win, device=x.device), center=True,
                      pad_mode="reflect" if x.shape[-1] > n_fft // 2 else "constant", return_complex=True)
    mag = (spec.real ** 2 + spec.imag ** 2).clamp(min=1e-7).sqrt()
    return mag.reshape(*x.shape[:-1], *mag.shape[-2:])


def mr_stft_loss(reference: torch.Tensor, estimate: torch.Tensor,
                 resolutions: tuple[tuple[int, int, int], ...] = MR_STFT_RESOLUTIONS) -> torch.Tensor:
    """Per-signal MR-STFT distance of estimate against reference, both [..., samples] of
    equal length -> [...]: the mean over resolutions of spectral convergence
    ||S_r - S_e||_F / ||S_r||_F plus the mean L1 of log magnitudes. 0 for identical
    signals; differentiable in `estimate`."""
    total = reference.new_zeros(reference.shape[:-1])
    for n_fft, hop, win in resolutions:
        sa, sb = stft_magnitude(reference, n_fft, hop, win), stft_magnitude(estimate, n_fft, hop, win)
        sc = torch.linalg.norm(sa - sb, dim=(-2, -1)) / torch.linalg.norm(sa, dim=(-2, -1)).clamp(min=1e-7)
        total = total + sc + (sa.log() - sb.log()).abs().mean(dim=(-2, -1))
    return total / len(resolutions)
