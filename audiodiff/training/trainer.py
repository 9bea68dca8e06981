"""The Trainer: builds a run's pieces from the recipe and runs the training loop.

The loop reads top to bottom in `Trainer.run`; each piece lives in its own module
(see the package's docstring): the state a checkpoint keeps (state.py), the loss
(objective.py), the optimiser step (step.py), the data (loader.py), validation
(validation.py) and where the run reports (run_log.py).
"""
from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from torch.utils.data import DataLoader

from audiodiff.audio import MelSpectrogram
from audiodiff.checkpoint import latest_checkpoint
from audiodiff.data import prepare_training_data
from audiodiff.devices import resolve_device
from audiodiff.errors import AudiodiffError
from audiodiff.precision import check_precision
from audiodiff.recipe import Recipe
from audiodiff.run_lock import RunLock, lock_run_folder
from audiodiff.training import state as run_state
from audiodiff.training.distributed import DistContext, init_distributed, shutdown
from audiodiff.training.loader import Crops, crop_loader, reference_clip
from audiodiff.training.lr_schedule import learning_rate_at
from audiodiff.training.objective import Objective
from audiodiff.training.run_log import LossWindow, RunLog
from audiodiff.training.state import TrainState, global_batch
from audiodiff.training.step import StepResult, TrainStep, data_parallel
from audiodiff.training.validation import Validator


@dataclass(frozen=True)
class TrainOptions:
    """How a run is started, beside its recipe and folder: on `device` ("auto", "cpu",
    "cuda:1"...), `console` getting the messages (rank 0; None: a default one) with a
    progress bar there if `progress`, and a new run starting from `init`'s weights (a
    checkpoint file or a shipped model's name, see state.start_from) when given."""
    device: str = "auto"
    console: Console | None = None
    progress: bool = True
    init: str | Path | None = None


class Trainer:
    """Trains the recipe's network in `out_dir`, resuming from its newest checkpoint; a
    new run starts from `options.init`'s weights when given (state.start_from).

    `dist` (from `distributed.init_distributed`) places this process in a data-parallel
    run and sets its device; without it the run is one process on `options.device`.
    """

    def __init__(self, recipe: Recipe, out_dir: str | Path, options: TrainOptions = TrainOptions(),
                 dist: DistContext | None = None):
        self.recipe, self.out = recipe, Path(out_dir)
        self.init = Path(options.init) if options.init is not None else None
        self.dist = dist or DistContext(resolve_device(options.device))
        self.log = RunLog(self.out, options.console, self.dist.is_main, options.progress, recipe.audio)
        _check_settings(recipe, self.dist.device)
        self.state = TrainState.fresh(recipe, self.dist.device)
        transform = MelSpectrogram(recipe.audio).to(self.dist.device)
        self.objective = Objective(self.state.network, recipe, transform, self.global_batch)
        crops = Crops(recipe, transform, self.state.network.conditional, self.dist.device)
        self.stepper = TrainStep(self.state, self.objective, crops, self.dist, self.log, self.out)
        self.validate = Validator(recipe, self.out, self.dist.device, self.log)
        self._last_saved = 0  # the step of the newest checkpoint this process wrote or resumed from

    @property
    def step(self) -> int:
        """Optimiser steps done."""
        return self.state.step

    @property
    def global_batch(self) -> int:
        """Crops per optimiser step: batch_size x processes x grad_accum."""
        return global_batch(self.recipe.train, self.dist.world_size)

    def run(self) -> Path | None:
        """Train to `train.max_steps`; returns the last checkpoint written.

        The run folder is locked first (rank 0, see run_lock.py) and until the end: a
        second training on it fails at once with RunFolderLocked naming the holder. A
        SIGTERM or Ctrl-C saves the steps done since the last checkpoint."""
        cfg = self.recipe.train
        with self._locked():
            self._restore()
            loader, reference = self._data()
            if self.step >= cfg.max_steps:
                self.log.say(f"Already at step {self.step} >= max_steps {cfg.max_steps}; nothing to do")
                return latest_checkpoint(self.out)
            self._announce()
            self.objective.denoiser = data_parallel(self.objective.denoiser, self.dist)
            window, batches = LossWindow(infer=cfg.infer_loss_weight > 0), iter(loader)
            with self._saved_on_interrupt(), self.log.progress(self.step, cfg.max_steps) as progress:
                while self.step < cfg.max_steps:
                    lr = learning_rate_at(self.step, cfg)
                    result = self.train_step([next(batches) for _ in range(cfg.grad_accum)])
                    self.state.step += 1
                    window.add(result)
                    steps_per_s = progress.update(self.step, result.loss)
                    if self._due(cfg.log_every):
                        self.log.train_record(window.record(self.step, lr, steps_per_s))
                    if self.dist.is_main and self._due(cfg.validate_every):
                        self.log.record({"step": self.step, **self.validate(self.state.ema, self.step, reference)})
                    if self._due(cfg.checkpoint_every):
                        self.save()
                        self.log.flush()
            self.dist.barrier()  # the last checkpoint is written before any process returns
            return latest_checkpoint(self.out)

    def train_step(self, batches: list[torch.Tensor]) -> StepResult:
        """One optimiser step on this process's `grad_accum` micro-batches (step.TrainStep)."""
        return self.stepper(batches)

    def start_from(self, init: str | Path) -> None:
        """Begin a new run from `init`'s EMA weights (state.start_from)."""
        run_state.start_from(self.state, self.recipe, init, self.log)

    def save(self) -> Path | None:
        """Checkpoint the current step, keeping the newest `keep_checkpoints` (rank 0 only;
        other processes return None)."""
        if not self.dist.is_main:
            return None
        path = run_state.save(self.state, self.recipe, self.out, self.dist.world_size)
        self._last_saved = self.step
        return path

    def _due(self, every: int) -> bool:
        """True at every `every`-th step and at the last one."""
        return self.step % every == 0 or self.step == self.recipe.train.max_steps

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the run folder's lock (taken on rank 0; its error reaches every rank)."""
        held: list[RunLock] = []
        self.dist.on_main(lambda: held.append(lock_run_folder(self.out)))
        try:
            yield
        finally:
            for lock in held:
                lock.release()

    def _restore(self) -> None:
        """Resume from the run folder's newest checkpoint, or start a new run from `init`;
        every process must be at the same step. Creates the folder, drops a killed run's
        log records after that step."""
        run_state.resume(self.state, self.recipe, self.out, self.global_batch, self.log)
        if self.init is not None:
            if self.step == 0:
                self.start_from(self.init)
            else:
                self.log.say(f"--init {self.init} ignored: the run folder has its own checkpoint")
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        if not self.dist.same_everywhere(self.step):
            raise AudiodiffError(f"{self.out}: the processes found different checkpoints there; on several "
                                 f"nodes the run folder must be on a file system they all share")
        self.log.truncate_after(self.step)
        self._last_saved = self.step

    def _data(self) -> tuple[DataLoader, torch.Tensor | None]:
        """The crop loader from this step on, and the validation clip (rank 0 only)."""
        # Rank 0 scans the data and writes the split (bad-data rules: data/survey.py); the others get its result.
        data = self.dist.on_main(lambda: prepare_training_data(
            self.recipe, self.out, self.log.warn, console=self.log.console if self.log.show_progress else None))
        self.log.say(f"Data: {data.describe()}")
        loader = crop_loader(self.recipe, data.train, self.step, self.dist)
        return loader, reference_clip(self.recipe, data.validation) if self.dist.is_main else None

    def _announce(self) -> None:
        """Say (and log) how big a step is, where and how it runs; open TensorBoard."""
        cfg = self.recipe.train
        text = (f"Global batch: {self.global_batch} crops per step = {cfg.batch_size} per process x "
                f"{self.dist.world_size} process(es) x {cfg.grad_accum} accumulation step(s); "
                f"precision {cfg.precision}; device {self.dist.device}")
        settings = {"global_batch": self.global_batch, "batch_size": cfg.batch_size,
                    "processes": self.dist.world_size, "grad_accum": cfg.grad_accum, "precision": cfg.precision}
        self.log.announce(self.step, text, settings, cfg.tensorboard)

    @contextlib.contextmanager
    def _saved_on_interrupt(self) -> Iterator[None]:
        """SIGTERM acts as Ctrl-C; either saves the steps done since the last checkpoint
        (rank 0) and goes on up. TensorBoard is closed at the end, however it comes."""
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            yield
        except KeyboardInterrupt:
            if self.step > self._last_saved and self.dist.is_main:
                self.log.say(f"Interrupted: saving step {self.step}")
                self.save()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.log.close()


def _check_settings(recipe: Recipe, device: torch.device) -> None:
    """Refuse a segment that is not whole frames or a precision the device lacks."""
    cfg = recipe.train
    if cfg.segment % recipe.audio.hop_length:
        raise AudiodiffError(f"train.segment {cfg.segment} must be a multiple of "
                             f"audio.hop_length {recipe.audio.hop_length}")
    check_precision(cfg.precision, device, "train.precision")
    if device.type == "cuda":
        # Every step has the same crop shape: let cuDNN time its convolution kernels once.
        torch.backends.cudnn.benchmark = True


def _raise_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def train(recipe: Recipe, out_dir: str | Path, options: TrainOptions = TrainOptions()) -> Path | None:
    """Train (or resume) a run; returns the path of its last checkpoint. A new run (no
    checkpoint in `out_dir`) starts from `options.init`'s weights when given
    (state.start_from).

    Started by torchrun, this process joins the data-parallel run (see distributed.py)
    and leaves it at the end.
    """
    ctx = init_distributed(options.device)
    try:
        return Trainer(recipe, out_dir, options, dist=ctx).run()
    finally:
        shutdown(ctx)
