"""The training objective: the loss of one micro-batch of crops, all its terms in one place.

In the spirit of k-diffusion's `Denoiser.loss`: `Objective.loss(audio, mel, generator,
offset)` draws noise levels and noise for the crops and returns the loss to
backpropagate, the definitions being those of diffusion.py and infer_loss.py:

    diffusion_loss  L1 on the recipe's target (model.target), + train.stft_loss_weight x
                    the MR-STFT distance of the network's clean estimate (diffusion.py)
    infer term      + train.infer_loss_weight x InferGrad's infer loss: the MR-STFT
                    distance of the `train.infer_steps`-step sample (infer_loss.py)
                    on `train.infer_betas` or the default schedule

A vocoder's noise follows PriorGrad's prior (prior.py), per frame from the mel.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from audiodiff.audio import MelSpectrogram
from audiodiff.consistency import MelConsistency
from audiodiff.diffusion import LossSpec, RowShare, diffusion_loss
from audiodiff.prior import noise_std
from audiodiff.recipe import Recipe
from audiodiff.training.infer_loss import infer_loss, infer_schedule


class ConditionedNetwork(nn.Module):
    """The network as one module, mel upsampling included, so that DistributedDataParallel
    sees every parameter used in its forward.

    (noisy [B, 1, T], level [B], mel [B, n_mels, T / hop] or None) -> prediction [B, 1, T].
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, noisy: torch.Tensor, level: torch.Tensor, mel: torch.Tensor | None) -> torch.Tensor:
        cond = self.network.condition(mel) if mel is not None else None
        return self.network(noisy, level, cond)


@dataclass(frozen=True)
class LossTerms:
    """One micro-batch's loss: `total` (scalar) is what is backpropagated; `infer` (scalar)
    is the infer term alone, unweighted, None when train.infer_loss_weight is 0."""
    total: torch.Tensor
    infer: torch.Tensor | None


class Objective:
    """The loss of the recipe's network on crops that are rows of a global batch of `total`.

    `denoiser` is the network as a ConditionedNetwork: wrapped for DistributedDataParallel
    in a data-parallel run (step.data_parallel), so every forward goes through the wrapper.
    `transform` computes mels (the crops' own, for gain adjustment in the infer term).
    """

    def __init__(self, network: nn.Module, recipe: Recipe, transform: MelSpectrogram, total: int):
        self.denoiser: nn.Module = ConditionedNetwork(network)
        self.recipe, self.transform, self.total = recipe, transform, total
        self.spec = LossSpec.from_recipe(recipe)
        self.infer_schedule = infer_schedule(recipe)

    def loss(self, audio: torch.Tensor, mel: torch.Tensor | None, generator: torch.Generator,
             offset: int) -> LossTerms:
        """Crops `audio` [B, 1, segment] and their `mel` [B, n_mels, segment / hop] (None
        for an unconditional network), rows [offset, offset + B) of the global batch; all
        noise from `generator` (a CPU generator seeded for the step)."""
        cfg, share = self.recipe.train, RowShare(generator, offset, self.total)
        std = None if mel is None else noise_std(mel, self.recipe.audio, self.recipe.diffusion, audio.shape[-1])
        loss = diffusion_loss(self.denoiser, audio, mel, self.spec, share, std=std)
        if cfg.infer_loss_weight > 0:
            adjust = mel is not None and cfg.infer_gain_adjust
            project = MelConsistency(self.transform, mel).project if adjust else None
            term = infer_loss(lambda x, level: self.denoiser(x, level, mel), audio, self.infer_schedule, share,
                              std=std, project=project)
            return LossTerms(loss + cfg.infer_loss_weight * term, term)
        return LossTerms(loss, None)
