"""Samplers: small pure functions of (denoiser, schedule, starting noise, generator).

A denoiser is any callable `(x [B, 1, T], noise_level [B]) -> predicted noise [B, 1, T]`
(the network with its conditioner bound, possibly evaluated in chunks). Samplers
know nothing of the network's class; all randomness comes from the explicit
`generator` (a CPU torch.Generator, or a `RowShare` of one: see diffusion.py), so a
seed reproduces a result exactly.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from audiodiff.diffusion import RowShare, Schedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int], None] | None
Projection = Callable[[torch.Tensor], torch.Tensor] | None


def _level(schedule: Schedule, n: int, x: torch.Tensor) -> torch.Tensor:
    return schedule.noise_levels[n].to(dtype=torch.float32).expand(x.shape[0]).to(x.device)


def _gaussian(like: torch.Tensor, generator: torch.Generator | RowShare,
              scale: torch.Tensor | None = None) -> torch.Tensor:
    """Draws shaped like `like` [B, ...] (a plain generator is the share of all B rows), times `scale`."""
    share = RowShare.of(generator, like.shape[0])
    z = share.randn(like.shape).to(like.device, like.dtype)
    return z if scale is None else z * scale


def _estimates(x: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor,
               project: Projection, clip: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(noise estimate, clean estimate) at a step, both [B, 1, T]: x0 = (x - s eps) / a
    clamped to [-clip, clip], with a = sqrt(alpha_bar), s = sqrt(1 - alpha_bar). With a
    projection, x0 is projected and eps becomes the noise it implies, (x - a x0) / s."""
    a, s = float(alpha_bar.sqrt()), float((1 - alpha_bar).sqrt())
    x0 = ((x - s * eps) / a).clamp(-clip, clip)
    if project is None:
        return eps, x0
    x0 = project(x0)
    return (x - a * x0) / s, x0


def ddpm(denoise: Denoiser, schedule: Schedule, noise: torch.Tensor, generator: torch.Generator | RowShare,
         on_step: StepCallback = None, noise_scale: torch.Tensor | None = None,
         project: Projection = None, clip: float = 1.0) -> torch.Tensor:
    """Ancestral DDPM sampling (DiffWave Algorithm 2), one network call per step.

    noise [B, 1, T] is x_T; returns x_0 [B, 1, T]. Every step's x is clamped to
    [-clip, clip] as lmnt's DiffWave does (clip: the range of the audio the network
    was trained on, `data_scale` times [-1, 1]). `noise_scale`
    [B, 1, T] scales the noise injected at each step (PriorGrad's prior; x_T must
    already have it). `project` maps each step's clean estimate x0 [B, 1, T] to a
    corrected one (mel gain adjustment, see consistency.py) before the step is taken.
    """
    a, ab, beta = schedule.alphas, schedule.alpha_bars, schedule.betas
    x = noise
    for n in reversed(range(len(schedule))):
        eps = denoise(x, _level(schedule, n, x))
        if project is not None:  # DDPM's update needs only eps: no clean estimate without a projection
            eps, _ = _estimates(x, eps, ab[n], project, clip)
        x = (x - float(beta[n] / (1 - ab[n]).sqrt()) * eps) / float(a[n].sqrt())
        if n > 0:
            sigma = float(((1 - ab[n - 1]) / (1 - ab[n]) * beta[n]).sqrt())
            x = x + sigma * _gaussian(x, generator, noise_scale)
        x = x.clamp(-clip, clip)
        if on_step is not None:
            on_step(len(schedule) - n)
    return x


def ddim(denoise: Denoiser, schedule: Schedule, noise: torch.Tensor, generator: torch.Generator | RowShare,
         on_step: StepCallback = None, eta: float = 0.0, noise_scale: torch.Tensor | None = None,
         project: Projection = None, clip: float = 1.0) -> torch.Tensor:
    """DDIM (Song et al. 2021): deterministic for eta = 0, ancestral-like for eta = 1.

    noise [B, 1, T] is x_T; returns x_0 [B, 1, T] clamped to [-clip, clip]. `noise_scale`,
    `project` and `clip` as in `ddpm`.
    """
    ab = schedule.alpha_bars
    x = noise
    for n in reversed(range(len(schedule))):
        eps, x0 = _estimates(x, denoise(x, _level(schedule, n, x)), ab[n], project, clip)
        if project is not None:
            x0 = x0.clamp(-clip, clip)  # a projected estimate may step outside [-1, 1]
        ab_n = ab[n]
        ab_prev = ab[n - 1] if n > 0 else torch.ones((), dtype=ab.dtype)
        sigma = eta * float(((1 - ab_prev) / (1 - ab_n) * (1 - ab_n / ab_prev)).sqrt())
        direction = float((1 - ab_prev - sigma ** 2).clamp(min=0).sqrt())
        x = float(ab_prev.sqrt()) * x0 + direction * eps
        if n > 0 and sigma > 0:
            x = x + sigma * _gaussian(x, generator, noise_scale)
        if on_step is not None:
            on_step(len(schedule) - n)
    return x.clamp(-clip, clip)


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {"ddpm": ddpm, "ddim": ddim}
