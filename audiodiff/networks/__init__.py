"""Denoiser networks, one module per family, found by the recipe's `model.family`.

Every family has the same contract, which is all samplers, training and inference use:
- `from_recipe(recipe)` builds it;
- `forward(audio [B, 1, T], noise_level [B], cond)` -> noise estimate [B, 1, T];
- `condition(mel [B, n_mels, frames])` -> `cond`, computed once per utterance,
  with `cond_hop` samples per column (so a chunk [a, b) takes columns
  [a // cond_hop, b // cond_hop));
- `conditional` (takes a mel) and `receptive_margin()` (samples each side an output
  sample depends on, a multiple of `cond_hop`), for exact chunked inference.
Adding a family: one module and one line in `NETWORKS`.
"""
from __future__ import annotations

from torch import nn

from audiodiff.networks.diffwave import DiffWave
from audiodiff.networks.frames import FrameDenoiser
from audiodiff.recipe import NETWORK_FAMILIES, Recipe

NETWORKS: dict[str, type[nn.Module]] = {"diffwave": DiffWave, "frames": FrameDenoiser}
assert tuple(NETWORKS) == NETWORK_FAMILIES, "recipe.NETWORK_FAMILIES names the registry's families"


def build_network(recipe: Recipe) -> nn.Module:
    """The recipe's denoiser (its `model.family`), freshly initialised."""
    return NETWORKS[recipe.model.family].from_recipe(recipe)
