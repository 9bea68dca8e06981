"""A run's state: what a checkpoint saves and a resumed run restores.

Network and EMA weights, optimiser, gradient scaler, step, the non-finite streak and
the inference defaults the checkpoints carry. A run gets it one of three ways: fresh
(seeded from `train.seed`), resumed from the run folder's newest checkpoint, or
started from another model's EMA weights (`--init`, a fine-tune). Saving writes
`step-XXXXXXXX.pt` atomically and keeps the newest `train.keep_checkpoints`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from audiodiff.checkpoint import Checkpoint, checkpoint_name, latest_checkpoint, load_checkpoint, save_checkpoint
from audiodiff.data import BatchLayout
from audiodiff.errors import AudiodiffError
from audiodiff.inference_defaults import InferenceDefaults
from audiodiff.networks import build_network
from audiodiff.precision import grad_scaler
from audiodiff.pretrained import model_name, resolve_checkpoint
from audiodiff.recipe import Recipe, TrainConfig
from audiodiff.training.run_log import RunLog


@dataclass
class TrainState:
    """What a training run holds between steps and its checkpoints keep."""
    network: nn.Module                   # the live weights the optimiser updates
    ema: nn.Module                       # their exponential moving average: what inference uses
    optimizer: torch.optim.Optimizer     # AdamW over `network`
    scaler: torch.amp.GradScaler         # loss scaling (enabled for fp16 only)
    step: int = 0                        # optimiser steps done
    nonfinite_streak: int = 0            # steps skipped in a row for a non-finite loss or gradient
    defaults: InferenceDefaults = field(default_factory=InferenceDefaults)  # what checkpoints carry

    @classmethod
    def fresh(cls, recipe: Recipe, device: torch.device) -> TrainState:
        """Step 0: the recipe's network seeded by `train.seed`, its EMA a copy of it."""
        cfg = recipe.train
        torch.manual_seed(cfg.seed)
        network = build_network(recipe).to(device)
        ema = copy.deepcopy(network).requires_grad_(False)
        optimizer = torch.optim.AdamW(network.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        return cls(network, ema, optimizer, grad_scaler(cfg.precision, device))


def global_batch(cfg: TrainConfig, world_size: int) -> int:
    """Crops per optimiser step: batch_size x processes x grad_accum."""
    return BatchLayout(cfg.batch_size, world_size=world_size, accum=cfg.grad_accum).global_batch


def resume(state: TrainState, recipe: Recipe, out: Path, batch: int, log: RunLog) -> None:
    """Load the newest checkpoint in the run folder `out` into `state`, if there is one.
    `batch` is this run's global batch: a change from the checkpoint's is warned about."""
    path = latest_checkpoint(out)
    if path is None:
        return
    ckpt = load_checkpoint(path)
    check_sections(ckpt, recipe, f"{out}: holds a run with different [{{section}}] settings; "
                                 f"use another --out or the original recipe")
    state.network.load_state_dict(ckpt.model)
    state.ema.load_state_dict(ckpt.ema)
    if ckpt.optimizer is not None:
        state.optimizer.load_state_dict(ckpt.optimizer)
    extra = ckpt.extra
    if extra.get("grad_scaler"):
        state.scaler.load_state_dict(extra["grad_scaler"])
    state.nonfinite_streak = int(extra.get("nonfinite_streak", 0))
    state.step = ckpt.step
    state.defaults = ckpt.defaults
    log.say(f"Resuming from step {state.step} ({path})")
    before = extra.get("global_batch")
    if before is not None and before != batch:
        log.warn(f"the global batch changes from {before} to {batch} crops per step "
                 f"(batch_size x processes x grad_accum): the run no longer follows its first curve")


def start_from(state: TrainState, recipe: Recipe, init: str | Path, log: RunLog) -> None:
    """Begin a new run from another checkpoint's EMA weights (the ones inference uses;
    an exported file holds only those): a fine-tune, e.g. of the shipped vocoder on
    another speaker. `init` is a checkpoint file or a shipped model's name ('vocoder').
    The network and its EMA both start from them, the step count goes on from the
    checkpoint's (so the rate schedule and max_steps count total training), the
    optimiser starts fresh, and the new checkpoints inherit the parent's inference
    defaults (steps, gain adjustment, refinement, searched schedules as a starting
    point), marked as inherited. [audio], [model] and [diffusion] must match the recipe."""
    path = resolve_checkpoint(init)
    ckpt = load_checkpoint(path)
    check_sections(ckpt, recipe, f"--init {path}: a model with different [{{section}}] settings from the "
                                 f"recipe's; fine-tune with the recipe it was trained with")
    if ckpt.step >= recipe.train.max_steps:
        raise AudiodiffError(f"--init {path}: already trained {ckpt.step} steps, not fewer than "
                             f"train.max_steps {recipe.train.max_steps}; raise --max-steps")
    state.network.load_state_dict(ckpt.ema)  # float16 exports are cast to the network's float32
    state.ema.load_state_dict(ckpt.ema)
    state.step = ckpt.step
    state.defaults = ckpt.defaults.inherited(model_name(path))
    log.say(f"Starting from {path} (step {state.step}, its EMA weights; a fresh optimiser; "
            f"{state.defaults.describe()})", highlight=False)


def check_sections(ckpt: Checkpoint, recipe: Recipe, message: str) -> None:
    """Refuse a checkpoint whose [audio], [model] or [diffusion] differ from the recipe's:
    AudiodiffError with `message` formatted with the first such `section`."""
    for section in ("audio", "model", "diffusion"):
        if getattr(ckpt.recipe, section) != getattr(recipe, section):
            raise AudiodiffError(message.format(section=section))


def save(state: TrainState, recipe: Recipe, out: Path, world_size: int) -> Path:
    """Checkpoint `state` in the run folder `out` and keep only the newest
    `train.keep_checkpoints`. `extra` records how the steps ran (global batch, processes,
    accumulation, precision) and what a resume needs beyond the weights."""
    cfg = recipe.train
    extra = {"global_batch": global_batch(cfg, world_size), "processes": world_size,
             "grad_accum": cfg.grad_accum, "precision": cfg.precision,
             "nonfinite_streak": state.nonfinite_streak, "grad_scaler": state.scaler.state_dict()}
    path = save_checkpoint(out / checkpoint_name(state.step), Checkpoint(
        recipe=recipe, step=state.step, model=state.network.state_dict(), ema=state.ema.state_dict(),
        optimizer=state.optimizer.state_dict(), extra=extra, defaults=state.defaults))
    for old in sorted(out.glob("step-*.pt"))[:-cfg.keep_checkpoints]:
        old.unlink(missing_ok=True)
    return path
