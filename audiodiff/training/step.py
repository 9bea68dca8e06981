"""One optimiser step over the global batch, and the policy for a non-finite one.

A step sets the scheduled learning rate, runs the objective forward and backward on
this process's `train.grad_accum` micro-batches (DDP all-reduces the gradients on the
last one), clips the gradient norm to `train.grad_clip` and, when the global batch's
loss and the gradient norm are finite, updates the weights and their EMA. Otherwise the
step is skipped (no update, a warning; fp16's routine overflows only lower the loss
scale) and after `train.max_nonfinite` skips in a row training stops with
TrainingStopped, the checkpoints already written intact.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from audiodiff.checkpoint import latest_checkpoint
from audiodiff.errors import TrainingStopped
from audiodiff.precision import autocast
from audiodiff.training.distributed import DistContext
from audiodiff.training.loader import Crops, batch_layout
from audiodiff.training.lr_schedule import learning_rate_at
from audiodiff.training.objective import Objective
from audiodiff.training.run_log import RunLog
from audiodiff.training.state import TrainState


@dataclass(frozen=True)
class StepResult:
    """What one optimiser step reports, over the global batch."""
    loss: float        # the mean loss; nan for a skipped step
    grad_norm: float   # before clipping; nan for a skipped step
    infer_loss: float  # the infer term alone, unweighted; nan without train.infer_loss_weight


class TrainStep:
    """Optimiser steps on `state`: call it with this process's micro-batches, each crops
    with context [batch_size, 1, context + segment + context] (see loader.Crops).
    `out` is the run folder (named when training stops)."""

    def __init__(self, state: TrainState, objective: Objective, crops: Crops, dist: DistContext,
                 log: RunLog, out: Path):
        self.state, self.objective, self.crops, self.dist, self.log, self.out = state, objective, crops, dist, log, out
        self.cfg = objective.recipe.train
        self.layout = batch_layout(self.cfg, dist)

    def __call__(self, batches: list[torch.Tensor]) -> StepResult:
        """One optimiser step on `grad_accum` micro-batches; raises TrainingStopped after
        `train.max_nonfinite` skipped steps in a row."""
        state, cfg = self.state, self.cfg
        for group in state.optimizer.param_groups:
            group["lr"] = learning_rate_at(state.step, cfg)
        state.optimizer.zero_grad(set_to_none=True)
        loss, infer = self._backward(batches)
        state.scaler.unscale_(state.optimizer)  # no-op unless fp16
        norm = float(torch.nn.utils.clip_grad_norm_(state.network.parameters(), cfg.grad_clip))
        if math.isfinite(loss) and math.isfinite(norm):
            state.scaler.step(state.optimizer)
            state.scaler.update()
            update_ema(state, cfg.ema_decay)
            state.nonfinite_streak = 0
            return StepResult(loss, norm, infer)
        self._skip(loss)
        return StepResult(float("nan"), float("nan"), infer)

    def _backward(self, batches: list[torch.Tensor]) -> tuple[float, float]:
        """Forward and backward on each micro-batch (gradients accumulate, averaged);
        returns the global batch's mean loss and infer term (nan without one)."""
        state, cfg, device = self.state, self.cfg, self.dist.device
        total = torch.zeros((), device=device)
        infer_total = torch.zeros((), device=device)
        for micro, batch in enumerate(batches):
            audio, mel = self.crops.split(batch)
            generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + state.step)
            offset = self.layout.offset(micro)
            with gradient_sync(self.objective.denoiser, micro == len(batches) - 1):
                with autocast(cfg.precision, device):
                    terms = self.objective.loss(audio, mel, generator, offset)
                    if terms.infer is not None:
                        infer_total += terms.infer.detach().float()
                state.scaler.scale(terms.total / len(batches)).backward()
            total += terms.total.detach().float()
        loss = float(self.dist.mean(total / len(batches)))
        infer = float(self.dist.mean(infer_total / len(batches))) if cfg.infer_loss_weight > 0 else float("nan")
        return loss, infer

    def _skip(self, loss: float) -> None:
        """The non-finite policy: no update, a warning, TrainingStopped after too many in a row."""
        state, cfg = self.state, self.cfg
        state.scaler.update()  # fp16: a lower loss scale for the next step
        state.optimizer.zero_grad(set_to_none=True)
        state.nonfinite_streak += 1
        if not state.scaler.is_enabled() or not math.isfinite(loss):  # fp16 overflows are routine
            what = "loss" if not math.isfinite(loss) else "gradient"
            self.log.warn(f"step {state.step + 1}: non-finite {what}, step skipped "
                          f"({state.nonfinite_streak} in a row, stop at {cfg.max_nonfinite})")
        if state.nonfinite_streak >= cfg.max_nonfinite:
            last = latest_checkpoint(self.out)
            kept = f"the last checkpoint, {last}, is intact" if last else "no checkpoint had been written yet"
            raise TrainingStopped(
                f"training stopped at step {state.step + 1}: {state.nonfinite_streak} steps in a row had a "
                f"non-finite loss or gradient (train.max_nonfinite); {kept}; try a lower train.learning_rate "
                f"or train.precision = \"fp32\"")


@torch.no_grad()
def update_ema(state: TrainState, decay: float) -> None:
    """EMA weights move towards the live ones; the decay ramps up to `decay` over the first steps."""
    decay = min(decay, (1 + state.step) / (10 + state.step))
    ema, live = list(state.ema.parameters()), list(state.network.parameters())
    torch._foreach_lerp_(ema, live, 1 - decay)


def data_parallel(denoiser: nn.Module, dist: DistContext) -> nn.Module:
    """`denoiser` wrapped for DistributedDataParallel in a data-parallel run (once), else itself."""
    if not dist.distributed or isinstance(denoiser, DistributedDataParallel):
        return denoiser
    return DistributedDataParallel(denoiser, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)


def gradient_sync(denoiser: nn.Module, last: bool) -> contextlib.AbstractContextManager:
    """DDP all-reduces gradients on the last micro-batch of a step only."""
    if isinstance(denoiser, DistributedDataParallel) and not last:
        return denoiser.no_sync()
    return contextlib.nullcontext()
