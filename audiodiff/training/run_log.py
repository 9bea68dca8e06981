"""Where a training run reports: the console, metrics.jsonl, TensorBoard and the progress bar.

Only rank 0 prints and writes; on other ranks every method here is silent. metrics.jsonl
holds one JSON object per line: the run's settings each time it starts or resumes
({"step", "global_batch", "batch_size", "processes", "grad_accum", "precision"}), one
record per log interval ({"step", "loss", "grad_norm", "learning_rate", "steps_per_s"},
plus "infer_loss" with the infer term) and one per validation ({"step",
"val_log_mel_distance"}). A resumed run first drops the records after its checkpoint's
step (a killed run's tail), so the file reads as one uninterrupted run.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from audiodiff.atomic import append_text, atomic_path
from audiodiff.evaluation.metrics import finite_mean
from audiodiff.recipe import AudioConfig
from audiodiff.training.logging_tb import TensorBoardLog

if TYPE_CHECKING:  # step.py imports this module
    from audiodiff.training.step import StepResult


class RunLog:
    """The console (rank 0's; a quiet one elsewhere), `<out>/metrics.jsonl`, TensorBoard
    (`tb`: disabled until `announce` opens it on rank 0) and the progress bar."""

    def __init__(self, out: Path, console: Console | None, is_main: bool, progress: bool, audio: AudioConfig):
        self.out, self.is_main, self.audio = out, is_main, audio
        self.console = (console or Console(stderr=True)) if is_main else Console(quiet=True)
        self.show_progress = progress and is_main
        self.tb = TensorBoardLog(out / "tensorboard", False, audio)

    @property
    def metrics(self) -> Path:
        return self.out / "metrics.jsonl"

    def say(self, text: str, **style) -> None:
        """Print `text` (rich markup; `style`: rich's print options such as highlight)."""
        self.console.print(text, **style)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}", highlight=False)

    def record(self, record: dict, echo: bool = True) -> None:
        """Append `record` ({"step": s, ...}) to metrics.jsonl and print it (`echo`); a
        record with nothing beside its step is dropped."""
        if len(record) <= 1 or not self.is_main:
            return
        append_text(self.metrics, json.dumps(record) + "\n")
        if echo:
            text = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items())
            self.console.print(text, highlight=False)

    def train_record(self, record: dict) -> None:
        """A training record (LossWindow.record): to metrics.jsonl, the console and TensorBoard (train/...)."""
        self.record(record)
        self.tb.scalars(record["step"], {f"train/{k}": v for k, v in record.items() if k != "step"})

    def truncate_after(self, step: int) -> None:
        """Drop the records written after `step`, the checkpoint a run resumes from (rank 0)."""
        if not self.is_main or not self.metrics.is_file():
            return
        kept = [line for line in self.metrics.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        with atomic_path(self.metrics) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def announce(self, step: int, text: str, settings: dict, tensorboard: bool) -> None:
        """Say `text` (how a step runs); on rank 0 log `settings` at `step` and open
        TensorBoard (`tensorboard`: train.tensorboard) with `text` as the run's settings."""
        self.console.print(text, highlight=False)
        if not self.is_main:
            return
        self.record({"step": step, **settings}, echo=False)
        self.tb = TensorBoardLog(self.out / "tensorboard", tensorboard, self.audio,
                                 say=lambda m: self.console.print(m, markup=False, highlight=False),
                                 resume_step=step)
        self.tb.text(step, "run/settings", text)

    def progress(self, step: int, total: int) -> TrainProgress:
        """The progress bar from `step` to `total` (hidden unless shown on rank 0)."""
        return TrainProgress(self.console, self.show_progress, step, total)

    def flush(self) -> None:
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()


class TrainProgress:
    """A context manager: the progress bar of a run, and its speed since it (re)started."""

    def __init__(self, console: Console, shown: bool, step: int, total: int):
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[sps]:.2f} steps/s"),
                            TimeRemainingColumn(), console=console, disable=not shown)
        self.total, self.task = total, None
        self.start_step, self.start_time = step, time.perf_counter()

    def __enter__(self) -> TrainProgress:
        self.bar.start()
        self.task = self.bar.add_task("train", total=self.total, completed=self.start_step,
                                      loss=float("nan"), sps=0.0)
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def update(self, step: int, loss: float) -> float:
        """Show `step` done and its `loss`; returns the steps per second since the start."""
        sps = (step - self.start_step) / (time.perf_counter() - self.start_time)
        self.bar.update(self.task, completed=step, loss=loss, sps=sps)
        return sps


class LossWindow:
    """The steps since the last training record: its loss (and infer term) is their finite
    mean, its gradient norm the last step's."""

    def __init__(self, infer: bool):
        self.infer = infer  # train.infer_loss_weight > 0: records carry "infer_loss"
        self.results: list[StepResult] = []

    def add(self, result: StepResult) -> None:
        self.results.append(result)

    def record(self, step: int, learning_rate: float, steps_per_s: float) -> dict:
        """The record of the steps added since the last call (at least one), which it forgets."""
        results, self.results = self.results, []
        record = {"step": step, "loss": finite_mean([r.loss for r in results]), "grad_norm": results[-1].grad_norm,
                  "learning_rate": learning_rate, "steps_per_s": steps_per_s}
        if self.infer:
            record["infer_loss"] = finite_mean([r.infer_loss for r in results])
        return record
