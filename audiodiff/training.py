"""The training loop: AdamW, gradient clipping, EMA, atomic checkpoints, resume, validation.

A run lives in one folder:

    step-XXXXXXXX.pt   the last `keep_checkpoints` checkpoints (see checkpoint.py)
    split.json         the train/validation split (kept, so a resumed run reuses it)
    metrics.jsonl      one JSON line per log interval and per validation
    samples/           the validation reference and what the model made of it, per step

Re-running the same command resumes from the newest checkpoint. Batches, noise and
noise levels are drawn from generators seeded by (seed, step), so a run killed and
resumed follows the same loss curve as one that never stopped.
"""
from __future__ import annotations

import copy
import json
import math
import signal
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import DataLoader

from audiodiff.audio import MelSpectrogram, load_audio, save_audio
from audiodiff.checkpoint import checkpoint_name, latest_checkpoint, load_checkpoint, save_checkpoint
from audiodiff.data import CropDataset, StepBatchSampler, prepare_training_data
from audiodiff.diffusion import diffusion_loss, training_schedule
from audiodiff.errors import AudiodiffError
from audiodiff.evaluation.metrics import log_mel_distance
from audiodiff.inference import FAST_STEPS, Generator, Vocoder, resolve_device
from audiodiff.model import DiffWave
from audiodiff.recipe import Recipe


class Trainer:
    """Trains the recipe's network in `out_dir`, resuming from its newest checkpoint."""

    def __init__(self, recipe: Recipe, out_dir: str | Path, device: str = "auto",
                 console: Console | None = None, progress: bool = True):
        self.recipe, self.out = recipe, Path(out_dir)
        self.device = resolve_device(device)
        self.console = console or Console(stderr=True)
        self.show_progress = progress
        cfg = recipe.train
        if cfg.segment % recipe.audio.hop_length:
            raise AudiodiffError(f"train.segment {cfg.segment} must be a multiple of "
                                 f"audio.hop_length {recipe.audio.hop_length}")
        torch.manual_seed(cfg.seed)
        self.network = DiffWave.from_recipe(recipe).to(self.device)
        self.ema = copy.deepcopy(self.network).requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=cfg.learning_rate,
                                           weight_decay=cfg.weight_decay)
        self.schedule = training_schedule(recipe.diffusion)
        self.mel = MelSpectrogram(recipe.audio).to(self.device)
        # Crops come with this many frames of real audio each side, covering the STFT
        # window, so their mel frames equal those of the whole utterance.
        self.context_frames = -(-(recipe.audio.n_fft // 2) // recipe.audio.hop_length)
        self.step = 0

    # ----------------------------------------------------------------- state
    def resume(self) -> None:
        """Load the newest checkpoint in the run folder, if there is one."""
        path = latest_checkpoint(self.out)
        if path is None:
            return
        data = load_checkpoint(path)
        saved = data["recipe_obj"]
        for section in ("audio", "model", "diffusion"):
            if getattr(saved, section) != getattr(self.recipe, section):
                raise AudiodiffError(f"{self.out}: holds a run with different [{section}] settings; "
                                     f"use another --out or the original recipe")
        self.network.load_state_dict(data["model"])
        self.ema.load_state_dict(data["ema"])
        if data["optimizer"] is not None:
            self.optimizer.load_state_dict(data["optimizer"])
        self.step = data["step"]
        self.console.print(f"Resuming from step {self.step} ({path})")

    def _truncate_metrics(self) -> None:
        """Drop log records written after the checkpoint we resume from (a killed run's tail)."""
        log = self.out / "metrics.jsonl"
        if log.is_file():
            kept = [line for line in log.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= self.step]
            log.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def save(self) -> Path:
        """Checkpoint the current step and keep only the newest `keep_checkpoints`."""
        path = save_checkpoint(self.out / checkpoint_name(self.step), recipe=self.recipe,
                               model=self.network.state_dict(), ema=self.ema.state_dict(),
                               optimizer=self.optimizer.state_dict(), step=self.step)
        for old in sorted(self.out.glob("step-*.pt"))[:-self.recipe.train.keep_checkpoints]:
            old.unlink(missing_ok=True)
        return path

    # ----------------------------------------------------------------- data
    def _data(self) -> tuple[DataLoader, torch.Tensor | None]:
        cfg, audio = self.recipe.train, self.recipe.audio
        data = prepare_training_data(self.recipe, self.out, self._warn,  # bad-data rules: audiodiff/data/survey.py
                                     console=self.console if self.show_progress else None)
        train, val = data.train, data.validation
        self.console.print(f"Data: {data.describe()}")
        dataset = CropDataset(train, audio.sample_rate, cfg.segment, audio.hop_length,
                              context=self.context_frames * audio.hop_length)
        sampler = StepBatchSampler(len(train), cfg.batch_size, cfg.seed, self.step, cfg.max_steps)
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.num_workers)
        reference = None
        if val:
            n = int(cfg.validate_seconds * audio.sample_rate) // audio.hop_length * audio.hop_length
            reference = torch.from_numpy(load_audio(val[0].path, audio.sample_rate)[:n])
        return loader, reference

    def _warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}", highlight=False)

    # ----------------------------------------------------------------- steps
    def train_step(self, batch: torch.Tensor) -> tuple[float, float]:
        """One optimiser step on crops with context [B, 1, context + segment + context]
        (see CropDataset); returns (loss, grad norm)."""
        cfg, hop, c = self.recipe.train, self.recipe.audio.hop_length, self.context_frames
        batch = batch.to(self.device)
        with torch.no_grad():
            mel = self.mel(batch.squeeze(1))[..., c:c + cfg.segment // hop]
        audio = batch[..., c * hop:c * hop + cfg.segment]
        cond = self.network.condition(mel) if self.network.conditional else None
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step)
        loss = diffusion_loss(self.network, audio, cond, self.schedule, generator)
        self.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            self._warn(f"step {self.step}: non-finite loss, step skipped")
            return float("nan"), float("nan")
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self._update_ema()
        return float(loss.detach()), float(norm)

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
            wav = vocoder.resynthesize(reference, steps=FAST_STEPS, seed=0)
            save_audio(name, wav, audio.sample_rate)
            if not (samples / "reference.wav").exists():
                save_audio(samples / "reference.wav", reference, audio.sample_rate)
            result = {"val_log_mel_distance": log_mel_distance(reference, wav, audio)}
        else:
            generator = Generator(self.ema, self.recipe, device=self.device)
            wav = generator.generate(self.recipe.train.validate_seconds, steps=FAST_STEPS, seed=0)[0]
            save_audio(name, wav, audio.sample_rate)
            result = {}
        return result

    # ----------------------------------------------------------------- loop
    def run(self) -> Path:
        """Train to `train.max_steps`; returns the last checkpoint written."""
        cfg = self.recipe.train
        self.out.mkdir(parents=True, exist_ok=True)
        self.resume()
        self._truncate_metrics()
        loader, reference = self._data()
        if self.step >= cfg.max_steps:
            self.console.print(f"Already at step {self.step} >= max_steps {cfg.max_steps}; nothing to do")
            return latest_checkpoint(self.out)
        last_saved = self.step
        window: list[float] = []
        t_start, steps_at_start = time.perf_counter(), self.step
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            with self._progress() as progress:
                task = progress.add_task("train", total=cfg.max_steps, completed=self.step,
                                         loss=float("nan"), sps=0.0)
                for batch in loader:
                    loss, norm = self.train_step(batch)
                    self.step += 1
                    window.append(loss)
                    sps = (self.step - steps_at_start) / (time.perf_counter() - t_start)
                    progress.update(task, completed=self.step, loss=loss, sps=sps)
                    if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                        self._log({"step": self.step, "loss": _mean(window), "grad_norm": norm,
                                   "steps_per_s": sps})
                        window = []
                    if self.step % cfg.validate_every == 0 or self.step == cfg.max_steps:
                        self._log({"step": self.step, **self.validate(reference)})
                    if self.step % cfg.checkpoint_every == 0 or self.step == cfg.max_steps:
                        self.save()
                        last_saved = self.step
        except KeyboardInterrupt:
            if self.step > last_saved:
                self.console.print(f"Interrupted: saving step {self.step}")
                self.save()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
        return latest_checkpoint(self.out)

    def _progress(self) -> Progress:
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[sps]:.2f} steps/s"),
                        TimeRemainingColumn(), console=self.console, disable=not self.show_progress)

    def _log(self, record: dict) -> None:
        if len(record) <= 1:
            return
        with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        text = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items())
        self.console.print(text, highlight=False)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def _raise_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def train(recipe: Recipe, out_dir: str | Path, device: str = "auto", console: Console | None = None,
          progress: bool = True) -> Path:
    """Train (or resume) a run; returns the path of its last checkpoint."""
    return Trainer(recipe, out_dir, device=device, console=console, progress=progress).run()
