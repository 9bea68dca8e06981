"""The learning rate as a function of the step: linear warm-up, then decay to a floor.

A pure function of (step, recipe), so a resumed run uses exactly the rates of one
that never stopped, and changing the recipe's schedule on resume takes effect at once.
"""
from __future__ import annotations

import math

from audiodiff.recipe import TrainConfig


def learning_rate_at(step: int, cfg: TrainConfig) -> float:
    """The rate of the optimiser step taken at `step` (0 for the first step).

    Warm-up: `learning_rate * (step + 1) / warmup_steps` for the first `warmup_steps`
    steps. Then `learning_rate` until `decay_start` (if later than the warm-up: to anneal
    a run resumed from a constant rate), then `lr_decay` over `decay_steps` steps (0:
    until `max_steps`) from `learning_rate` to `min_learning_rate`, which it keeps
    afterwards: 'none' (constant `learning_rate`), 'linear', or 'cosine' (half a cosine
    period).
    """
    base, floor, warmup = cfg.learning_rate, cfg.min_learning_rate, cfg.warmup_steps
    if step < warmup:
        return base * (step + 1) / warmup
    start = max(warmup, cfg.decay_start)
    if cfg.lr_decay == "none" or step < start:
        return base
    span = cfg.decay_steps or max(1, cfg.max_steps - start)
    t = min(1.0, (step - start) / span)
    if cfg.lr_decay == "linear":
        return base + (floor - base) * t
    return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * t))
