"""The training loop: AdamW with a learning-rate schedule, gradient accumulation,
clipping, EMA, mixed precision, data parallelism (torchrun), atomic checkpoints,
resume, validation, and logging to metrics.jsonl and TensorBoard.

A run lives in one folder:

    step-XXXXXXXX.pt   the last `keep_checkpoints` checkpoints (see checkpoint.py)
    split.json         the train/validation split (kept, so a resumed run reuses it)
    metrics.jsonl      one JSON line per log interval and per validation
    samples/           the validation reference and what the model made of it, per step
    tensorboard/       TensorBoard events (when the optional package is installed)
    train.lock         locked while a training writes here: a second one fails at once (run_lock.py)

One optimiser step sees the global batch: `train.batch_size` crops x processes (one
per device under torchrun, see distributed.py) x `train.grad_accum` accumulation
steps. The crops, noise levels and noise of step s are drawn for the whole global
batch from generators seeded by (seed, s), and each process and accumulation step
takes its rows of it. So a run killed and resumed follows the same loss curve as one
that never stopped, and N processes follow (up to float rounding) the curve of one
process with the same global batch. Only rank 0 writes files and prints.

A step whose loss (over the global batch) or gradient norm is not finite is skipped:
no optimiser or EMA update, a warning; after `train.max_nonfinite` such steps in a
row training stops with `TrainingStopped` and the checkpoints already written intact.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import signal
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from audiodiff.atomic import append_text, atomic_path
from audiodiff.audio import MelSpectrogram, load_audio, save_audio
from audiodiff.checkpoint import Checkpoint, checkpoint_name, latest_checkpoint, load_checkpoint, save_checkpoint
from audiodiff.data import (CropDataset, StepBatchSampler, ignore_stop_signals, prepare_training_data,
                            share_offset)
from audiodiff.devices import resolve_device
from audiodiff.diffusion import diffusion_loss, inference_schedule, training_schedule
from audiodiff.distributed import DistContext, init_distributed, shutdown
from audiodiff.errors import AudiodiffError, TrainingStopped
from audiodiff.evaluation.metrics import finite_mean, log_mel_distance
from audiodiff.infer_loss import infer_loss
from audiodiff.inference import Generator, Vocoder
from audiodiff.inference_defaults import InferenceDefaults
from audiodiff.logging_tb import TensorBoardLog
from audiodiff.lr_schedule import learning_rate_at
from audiodiff.networks import build_network
from audiodiff.precision import autocast, check_precision, grad_scaler
from audiodiff.pretrained import model_name, resolve_checkpoint
from audiodiff.prior import noise_std
from audiodiff.recipe import Recipe
from audiodiff.run_lock import RunLock, lock_run_folder


class DenoiserObjective(nn.Module):
    """The network as one module, mel upsampling included, so that DistributedDataParallel
    sees every parameter used in its forward.

    (noisy [B, 1, T], level [B], mel [B, n_mels, T / hop] or None) -> predicted noise [B, 1, T].
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, noisy: torch.Tensor, level: torch.Tensor, mel: torch.Tensor | None) -> torch.Tensor:
        cond = self.network.condition(mel) if mel is not None else None
        return self.network(noisy, level, cond)


class Trainer:
    """Trains the recipe's network in `out_dir`, resuming from its newest checkpoint.

    `dist` (from `distributed.init_distributed`) places this process in a data-parallel
    run and sets its device; without it the run is one process on `device`.
    """

    def __init__(self, recipe: Recipe, out_dir: str | Path, device: str = "auto",
                 console: Console | None = None, progress: bool = True, dist: DistContext | None = None,
                 init: str | Path | None = None):
        self.recipe, self.out = recipe, Path(out_dir)
        self.init = Path(init) if init is not None else None  # weights a new run starts from (see start_from)
        self.defaults = InferenceDefaults()  # what the checkpoints carry: a fine-tune's parent's (start_from)
        self.dist = dist or DistContext(resolve_device(device))
        self.device = self.dist.device
        self.console = (console or Console(stderr=True)) if self.dist.is_main else Console(quiet=True)
        self.show_progress = progress and self.dist.is_main
        cfg = recipe.train
        if cfg.segment % recipe.audio.hop_length:
            raise AudiodiffError(f"train.segment {cfg.segment} must be a multiple of "
                                 f"audio.hop_length {recipe.audio.hop_length}")
        check_precision(cfg.precision, self.device, "train.precision")
        if self.device.type == "cuda":
            # Every step has the same crop shape: let cuDNN time its convolution kernels once.
            torch.backends.cudnn.benchmark = True
        torch.manual_seed(cfg.seed)
        self.network = build_network(recipe).to(self.device)
        self.ema = copy.deepcopy(self.network).requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=cfg.learning_rate,
                                           weight_decay=cfg.weight_decay)
        self.scaler = grad_scaler(cfg.precision, self.device)
        # What computes the loss: the network, wrapped for DDP in a distributed run (see run).
        self.objective: nn.Module = DenoiserObjective(self.network)
        self.schedule = training_schedule(recipe.diffusion)
        self.infer_schedule = inference_schedule(recipe.diffusion, recipe.train.infer_steps)
        self.mel = MelSpectrogram(recipe.audio).to(self.device)
        # Crops come with this many frames of real audio each side, covering the STFT
        # window, so their mel frames equal those of the whole utterance.
        self.context_frames = -(-(recipe.audio.n_fft // 2) // recipe.audio.hop_length)
        self.step = 0
        self.nonfinite_streak = 0  # steps skipped in a row for a non-finite loss or gradient
        self.last_infer_loss = float("nan")  # the last step's infer-loss term, unweighted (logged as infer_loss)
        self.tb = TensorBoardLog(self.out / "tensorboard", False, recipe.audio)  # opened by run() on rank 0
        self.tb_has_reference = False

    @property
    def global_batch(self) -> int:
        """Crops per optimiser step: batch_size x processes x grad_accum."""
        cfg = self.recipe.train
        return cfg.batch_size * self.dist.world_size * cfg.grad_accum

    # ----------------------------------------------------------------- state
    def resume(self) -> None:
        """Load the newest checkpoint in the run folder, if there is one."""
        path = latest_checkpoint(self.out)
        if path is None:
            return
        ckpt = load_checkpoint(path)
        self._check_sections(ckpt, f"{self.out}: holds a run with different [{{section}}] settings; "
                                   f"use another --out or the original recipe")
        self.network.load_state_dict(ckpt.model)
        self.ema.load_state_dict(ckpt.ema)
        if ckpt.optimizer is not None:
            self.optimizer.load_state_dict(ckpt.optimizer)
        extra = ckpt.extra
        if extra.get("grad_scaler"):
            self.scaler.load_state_dict(extra["grad_scaler"])
        self.nonfinite_streak = int(extra.get("nonfinite_streak", 0))
        self.step = ckpt.step
        self.defaults = ckpt.defaults
        self.console.print(f"Resuming from step {self.step} ({path})")
        before = extra.get("global_batch")
        if before is not None and before != self.global_batch:
            self._warn(f"the global batch changes from {before} to {self.global_batch} crops per step "
                       f"(batch_size x processes x grad_accum): the run no longer follows its first curve")

    def start_from(self, init: str | Path) -> None:
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
        self._check_sections(ckpt, f"--init {path}: a model with different [{{section}}] settings from the "
                                   f"recipe's; fine-tune with the recipe it was trained with")
        if ckpt.step >= self.recipe.train.max_steps:
            raise AudiodiffError(f"--init {path}: already trained {ckpt.step} steps, not fewer than "
                                 f"train.max_steps {self.recipe.train.max_steps}; raise --max-steps")
        self.network.load_state_dict(ckpt.ema)  # float16 exports are cast to the network's float32
        self.ema.load_state_dict(ckpt.ema)
        self.step = ckpt.step
        self.defaults = ckpt.defaults.inherited(model_name(path))
        self.console.print(f"Starting from {path} (step {self.step}, its EMA weights; a fresh optimiser; "
                           f"{self.defaults.describe()})", highlight=False)

    def _check_sections(self, ckpt: Checkpoint, message: str) -> None:
        """Refuse a checkpoint whose [audio], [model] or [diffusion] differ from the recipe's:
        `message` is formatted with the first such `section`."""
        for section in ("audio", "model", "diffusion"):
            if getattr(ckpt.recipe, section) != getattr(self.recipe, section):
                raise AudiodiffError(message.format(section=section))

    def _truncate_metrics(self) -> None:
        """Drop log records written after the checkpoint we resume from (a killed run's tail)."""
        log = self.out / "metrics.jsonl"
        if log.is_file():
            kept = [line for line in log.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= self.step]
            with atomic_path(log) as tmp:
                tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def save(self) -> Path | None:
        """Checkpoint the current step and keep only the newest `keep_checkpoints` (rank 0
        only; other processes return None)."""
        if not self.dist.is_main:
            return None
        cfg = self.recipe.train
        extra = {"global_batch": self.global_batch, "processes": self.dist.world_size,
                 "grad_accum": cfg.grad_accum, "precision": cfg.precision,
                 "nonfinite_streak": self.nonfinite_streak, "grad_scaler": self.scaler.state_dict()}
        path = save_checkpoint(self.out / checkpoint_name(self.step), Checkpoint(
            recipe=self.recipe, step=self.step, model=self.network.state_dict(), ema=self.ema.state_dict(),
            optimizer=self.optimizer.state_dict(), extra=extra, defaults=self.defaults))
        for old in sorted(self.out.glob("step-*.pt"))[:-cfg.keep_checkpoints]:
            old.unlink(missing_ok=True)
        return path

    # ----------------------------------------------------------------- data
    def _data(self) -> tuple[DataLoader, torch.Tensor | None]:
        cfg, audio = self.recipe.train, self.recipe.audio
        # Rank 0 scans the data and writes the split; the others get its result.
        data = self.dist.on_main(lambda: prepare_training_data(  # bad-data rules: audiodiff/data/survey.py
            self.recipe, self.out, self._warn, console=self.console if self.show_progress else None))
        train, val = data.train, data.validation
        self.console.print(f"Data: {data.describe()}")
        dataset = CropDataset(train, audio.sample_rate, cfg.segment, audio.hop_length,
                              context=self.context_frames * audio.hop_length)
        sampler = StepBatchSampler(len(train), cfg.batch_size, cfg.seed, self.step, cfg.max_steps,
                                   rank=self.dist.rank, world_size=self.dist.world_size, accum=cfg.grad_accum)
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.num_workers,
                            worker_init_fn=ignore_stop_signals if cfg.num_workers else None,
                            pin_memory=self.device.type == "cuda")
        reference = None
        if val and self.dist.is_main:
            n = int(cfg.validate_seconds * audio.sample_rate) // audio.hop_length * audio.hop_length
            reference = torch.from_numpy(load_audio(val[0].path, audio.sample_rate)[:n])
        return loader, reference

    def _warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}", highlight=False)

    # ----------------------------------------------------------------- steps
    def train_step(self, batches: list[torch.Tensor]) -> tuple[float, float]:
        """One optimiser step on this process's `grad_accum` micro-batches, each crops with
        context [batch_size, 1, context + segment + context] (see CropDataset).

        Returns (loss, grad norm) of the global batch; (nan, nan) when the step was skipped
        for a non-finite loss or gradient. With `train.infer_loss_weight`, the infer term
        alone (unweighted) is left in `last_infer_loss`. Raises TrainingStopped after
        `train.max_nonfinite` skipped steps in a row.
        """
        cfg = self.recipe.train
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate_at(self.step, cfg)
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        infer_total = torch.zeros((), device=self.device)
        for micro, batch in enumerate(batches):
            audio, mel = self._crops(batch)
            generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step)
            offset = share_offset(micro, self.dist.rank, self.dist.world_size, cfg.batch_size)
            with self._gradient_sync(micro == len(batches) - 1):
                with autocast(cfg.precision, self.device):
                    std = None if mel is None else noise_std(mel, self.recipe.audio, self.recipe.diffusion,
                                                             audio.shape[-1])
                    loss = diffusion_loss(self.objective, audio, mel, self.schedule, generator,
                                          offset, self.global_batch, std=std,
                                          stft_weight=cfg.stft_loss_weight, target=self.recipe.model.target)
                    if cfg.infer_loss_weight > 0:
                        term = self._infer_loss(audio, mel, std, generator, offset)
                        loss = loss + cfg.infer_loss_weight * term
                        infer_total += term.detach().float()
                self.scaler.scale(loss / len(batches)).backward()
            total += loss.detach().float()
        loss = float(self.dist.mean(total / len(batches)))
        if cfg.infer_loss_weight > 0:
            self.last_infer_loss = float(self.dist.mean(infer_total / len(batches)))
        self.scaler.unscale_(self.optimizer)  # no-op unless fp16
        norm = float(torch.nn.utils.clip_grad_norm_(self.network.parameters(), cfg.grad_clip))
        if math.isfinite(loss) and math.isfinite(norm):
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self._update_ema()
            self.nonfinite_streak = 0
            return loss, norm
        self.scaler.update()  # fp16: a lower loss scale for the next step
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_streak += 1
        if not self.scaler.is_enabled() or not math.isfinite(loss):  # fp16 overflows are routine
            what = "loss" if not math.isfinite(loss) else "gradient"
            self._warn(f"step {self.step + 1}: non-finite {what}, step skipped "
                       f"({self.nonfinite_streak} in a row, stop at {cfg.max_nonfinite})")
        if self.nonfinite_streak >= cfg.max_nonfinite:
            last = latest_checkpoint(self.out)
            kept = f"the last checkpoint, {last}, is intact" if last else "no checkpoint had been written yet"
            raise TrainingStopped(
                f"training stopped at step {self.step + 1}: {self.nonfinite_streak} steps in a row had a non-finite "
                f"loss or gradient (train.max_nonfinite); {kept}; try a lower train.learning_rate "
                f"or train.precision = \"fp32\"")
        return float("nan"), float("nan")

    def _infer_loss(self, audio: torch.Tensor, mel: torch.Tensor, std: torch.Tensor | None,
                    generator: torch.Generator, offset: int) -> torch.Tensor:
        """InferGrad's term for crops audio [B, 1, segment] and their mel (see infer_loss.py),
        rows [offset, offset + B) of the global batch."""
        cfg = self.recipe.train
        return infer_loss(lambda x, level: self.objective(x, level, mel), audio, self.infer_schedule, generator,
                          std=std, mel=mel if cfg.infer_gain_adjust else None, transform=self.mel,
                          offset=offset, total=self.global_batch)

    def _crops(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Crops with context [B, 1, context + segment + context] -> (audio [B, 1, segment],
        its mel [B, n_mels, segment / hop], None for an unconditional network)."""
        seg, hop, c = self.recipe.train.segment, self.recipe.audio.hop_length, self.context_frames
        batch = batch.to(self.device, non_blocking=True)
        audio = batch[..., c * hop:c * hop + seg]
        if not self.network.conditional:
            return audio, None
        with torch.no_grad():
            mel = self.mel(batch.squeeze(1))[..., c:c + seg // hop]
        return audio, mel

    def _gradient_sync(self, last: bool) -> contextlib.AbstractContextManager:
        """DDP all-reduces gradients on the last micro-batch of a step only."""
        if isinstance(self.objective, DistributedDataParallel) and not last:
            return self.objective.no_sync()
        return contextlib.nullcontext()

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = min(self.recipe.train.ema_decay, (1 + self.step) / (10 + self.step))
        ema, live = list(self.ema.parameters()), list(self.network.parameters())
        torch._foreach_lerp_(ema, live, 1 - decay)

    def validate(self, reference: torch.Tensor | None) -> dict:
        """Vocode the held-out clip (fast sampler, EMA weights) or generate a clip; save it."""
        audio = self.recipe.audio
        samples = self.out / "samples"
        name = samples / f"step-{self.step:08d}.wav"
        if self.network.conditional:
            if reference is None:
                return {}
            vocoder = Vocoder(self.ema, self.recipe, device=self.device)
            # the network's own sampler (no mel gain adjustment): the number tracks the network
            wav = vocoder.resynthesize(reference, steps=self.recipe.diffusion.fast_steps, seed=0, gain_adjust=False)
            save_audio(name, wav, audio.sample_rate)
            if not (samples / "reference.wav").exists():
                save_audio(samples / "reference.wav", reference, audio.sample_rate)
            result = {"val_log_mel_distance": log_mel_distance(reference, wav, audio)}
            if self.tb.enabled and not self.tb_has_reference:
                self.tb.audio_and_spectrogram(self.step, "val/reference", "val/reference_spectrogram", reference)
                self.tb_has_reference = True
        else:
            generator = Generator(self.ema, self.recipe, device=self.device)
            wav = generator.generate(self.recipe.train.validate_seconds, steps=self.recipe.diffusion.fast_steps, seed=0)[0]
            save_audio(name, wav, audio.sample_rate)
            result = {}
        self.tb.audio_and_spectrogram(self.step, "val/audio", "val/spectrogram", wav)
        self.tb.scalars(self.step, {f"val/{k.removeprefix('val_')}": v for k, v in result.items()})
        return result

    # ----------------------------------------------------------------- loop
    def run(self) -> Path | None:
        """Train to `train.max_steps`; returns the last checkpoint written.

        The run folder is locked first (rank 0, see run_lock.py) and until the end: a
        second training on it fails at once with RunFolderLocked naming the holder."""
        held: list[RunLock] = []
        self.dist.on_main(lambda: held.append(lock_run_folder(self.out)))  # its error reaches every rank
        try:
            return self._run()
        finally:
            for lock in held:
                lock.release()

    def _run(self) -> Path | None:
        cfg = self.recipe.train
        self.resume()
        if self.init is not None:
            if self.step == 0:
                self.start_from(self.init)
            else:
                self.console.print(f"--init {self.init} ignored: the run folder has its own checkpoint")
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        if not self.dist.same_everywhere(self.step):
            raise AudiodiffError(f"{self.out}: the processes found different checkpoints there; on several "
                                 f"nodes the run folder must be on a file system they all share")
        if self.dist.is_main:
            self._truncate_metrics()
        loader, reference = self._data()
        if self.step >= cfg.max_steps:
            self.console.print(f"Already at step {self.step} >= max_steps {cfg.max_steps}; nothing to do")
            return latest_checkpoint(self.out)
        self._announce()
        if self.dist.distributed and not isinstance(self.objective, DistributedDataParallel):
            self.objective = DistributedDataParallel(
                self.objective, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        last_saved = self.step
        window: list[float] = []
        infer_window: list[float] = []
        t_start, steps_at_start = time.perf_counter(), self.step
        batches = iter(loader)
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            with self._progress() as progress:
                task = progress.add_task("train", total=cfg.max_steps, completed=self.step,
                                         loss=float("nan"), sps=0.0)
                while self.step < cfg.max_steps:
                    lr = learning_rate_at(self.step, cfg)
                    loss, norm = self.train_step([next(batches) for _ in range(cfg.grad_accum)])
                    self.step += 1
                    window.append(loss)
                    infer_window.append(self.last_infer_loss)
                    sps = (self.step - steps_at_start) / (time.perf_counter() - t_start)
                    progress.update(task, completed=self.step, loss=loss, sps=sps)
                    if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                        record = {"step": self.step, "loss": finite_mean(window), "grad_norm": norm,
                                  "learning_rate": lr, "steps_per_s": sps}
                        if cfg.infer_loss_weight > 0:
                            record["infer_loss"] = finite_mean(infer_window)
                        self._log(record)
                        self.tb.scalars(self.step, {f"train/{k}": v for k, v in record.items() if k != "step"})
                        window, infer_window = [], []
                    if self.dist.is_main and (self.step % cfg.validate_every == 0 or self.step == cfg.max_steps):
                        self._log({"step": self.step, **self.validate(reference)})
                    if self.step % cfg.checkpoint_every == 0 or self.step == cfg.max_steps:
                        self.save()
                        self.tb.flush()
                        last_saved = self.step
        except KeyboardInterrupt:
            if self.step > last_saved and self.dist.is_main:
                self.console.print(f"Interrupted: saving step {self.step}")
                self.save()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.tb.close()
        self.dist.barrier()  # the last checkpoint is written before any process returns
        return latest_checkpoint(self.out)

    def _announce(self) -> None:
        """Say (and log) how big a step is, where and how it runs; open TensorBoard."""
        cfg = self.recipe.train
        text = (f"Global batch: {self.global_batch} crops per step = {cfg.batch_size} per process x "
                f"{self.dist.world_size} process(es) x {cfg.grad_accum} accumulation step(s); "
                f"precision {cfg.precision}; device {self.device}")
        self.console.print(text, highlight=False)
        if self.dist.is_main:
            self._log({"step": self.step, "global_batch": self.global_batch, "batch_size": cfg.batch_size,
                       "processes": self.dist.world_size, "grad_accum": cfg.grad_accum,
                       "precision": cfg.precision}, echo=False)
            self.tb = TensorBoardLog(self.out / "tensorboard", cfg.tensorboard, self.recipe.audio,
                                     say=lambda m: self.console.print(m, markup=False, highlight=False),
                                     resume_step=self.step)
            self.tb.text(self.step, "run/settings", text)

    def _progress(self) -> Progress:
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[sps]:.2f} steps/s"),
                        TimeRemainingColumn(), console=self.console, disable=not self.show_progress)

    def _log(self, record: dict, echo: bool = True) -> None:
        if len(record) <= 1 or not self.dist.is_main:
            return
        append_text(self.out / "metrics.jsonl", json.dumps(record) + "\n")
        if echo:
            text = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items())
            self.console.print(text, highlight=False)


def _raise_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def train(recipe: Recipe, out_dir: str | Path, device: str = "auto", console: Console | None = None,
          progress: bool = True, init: str | Path | None = None) -> Path | None:
    """Train (or resume) a run; returns the path of its last checkpoint. A new run (no
    checkpoint in `out_dir`) starts from `init`'s weights when given (Trainer.start_from).

    Started by torchrun, this process joins the data-parallel run (see distributed.py)
    and leaves it at the end.
    """
    ctx = init_distributed(device)
    try:
        return Trainer(recipe, out_dir, console=console, progress=progress, dist=ctx, init=init).run()
    finally:
        shutdown(ctx)
