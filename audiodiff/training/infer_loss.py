"""InferGrad's infer loss: how far the few-step sampler's output is from the clean crop,
with gradients through every step of the sampler.

The noise loss (diffusion.diffusion_loss) trains each denoising step alone, at a level
drawn at random; a vocoder run with N steps chains N of them, each step building on the
last one's errors. InferGrad (Chen et al., ICASSP 2022) adds to the noise loss the
distance between the clean audio and the sample that the N-step schedule actually
produces from the crop's mel, backpropagated through the whole chain, so the network
learns the jumps that schedule takes. The chain here is the vocoder's own sampler
(samplers.ddpm) with PriorGrad's prior and, if asked, mel gain adjustment at every step
(consistency.py), as `vocode` runs it; the distance is the MR-STFT distance
(spectral.py), InferGrad's choice.
"""
from __future__ import annotations

import torch

from audiodiff.diffusion import RowShare, Schedule, inference_schedule
from audiodiff.recipe import Recipe
from audiodiff.samplers import Denoiser, Projection, ddpm
from audiodiff.spectral import mr_stft_loss


def infer_schedule(recipe: Recipe) -> Schedule:
    """The chain the infer term trains: `train.infer_betas` when given (a schedule the
    model ships with, e.g. a searched one), else the default schedule for
    `train.infer_steps` (diffusion.inference_schedule)."""
    betas = recipe.train.infer_betas
    return Schedule.from_betas(betas) if betas else inference_schedule(recipe.diffusion, recipe.train.infer_steps)


def infer_loss(denoise: Denoiser, audio: torch.Tensor, schedule: Schedule, generator: torch.Generator | RowShare,
               std: torch.Tensor | None = None, project: Projection = None) -> torch.Tensor:
    """Mean MR-STFT distance between `audio` [B, 1, T] and the ancestral (DDPM) sample
    that `schedule` makes from noise, differentiable in the network's parameters.

    `denoise(x [B, 1, T], level [B]) -> predicted noise [B, 1, T]`, bound to the crops'
    mel. `std` [B, 1, T]: PriorGrad's prior (scales the starting and injected noise, as
    in `vocode`); None is unit noise. With `project` (`MelConsistency(transform,
    mel).project`, consistency.py, for the crops' mel [B, n_mels, T / hop]), every step's
    clean estimate is gain-adjusted to the mel (`vocode --gain-adjust`). All noise comes
    from `generator` (a CPU generator).

    When `generator` is a RowShare, `audio` is rows [offset, offset + B) of a batch of
    `total` rows (a share of a global batch, as in diffusion.diffusion_loss): every draw
    is made for all `total` rows and this share's rows are used, so each crop meets the
    same noise however the batch is split.
    """
    share = RowShare.of(generator, audio.shape[0])
    noise = share.randn(audio.shape).to(audio.device)
    if std is not None:
        noise = noise * std
    sample = ddpm(denoise, schedule, noise, share, noise_scale=std, project=project)
    return mr_stft_loss(audio.squeeze(1), sample.squeeze(1)).mean()
