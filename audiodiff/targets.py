"""What a denoiser's raw output estimates, and the conversions between estimates.

With `x_t = a * x0 + s * eps`, `a = level = sqrt(alpha_bar)`, `s = sqrt(1 - a^2)`:
- "eps": the noise (DiffWave);
- "x0": the clean signal;
- "v": `a * eps - s * x0` (Salimans & Ho 2022), so `eps = s * x_t + a * v` and
  `x0 = a * x_t - s * v`.

Samplers and every inference path see a noise estimate; a network whose target is
not "eps" converts its output with `eps_from` before returning it, and the training
loss is taken on the target with `target_from_eps`.
All tensors are `[batch, 1, samples]`; `level` is `[batch, 1, 1]`.
"""
from __future__ import annotations

import torch

#: The smallest sqrt(1 - level^2) used when dividing by it: level 1 leaves no noise to estimate.
MIN_NOISE_STD = 1e-4


def _noise_std(level: torch.Tensor) -> torch.Tensor:
    return (1 - level ** 2).clamp(min=MIN_NOISE_STD ** 2).sqrt()


def eps_from(output: torch.Tensor, noisy: torch.Tensor, level: torch.Tensor, target: str) -> torch.Tensor:
    """The noise estimate implied by a raw network `output` of kind `target`."""
    if target == "eps":
        return output
    s = _noise_std(level)
    if target == "x0":
        return (noisy - level * output) / s
    if target == "v":
        return s * noisy + level * output
    raise ValueError(f"unknown target {target!r}")


def target_from_eps(eps: torch.Tensor, noisy: torch.Tensor, level: torch.Tensor, target: str) -> torch.Tensor:
    """The estimate of kind `target` implied by a noise estimate (inverse of `eps_from`;
    also maps the true noise to the true target)."""
    if target == "eps":
        return eps
    s = _noise_std(level)
    x0 = (noisy - s * eps) / level
    if target == "x0":
        return x0
    if target == "v":
        return level * eps - s * x0
    raise ValueError(f"unknown target {target!r}")
