"""`audiodiff schedule search`, with its metric options (eval's keys, legacy names renamed)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from audiodiff.cli.app import app, err, note, say
from audiodiff.cli.options import DeviceOpt, GainAdjustOpt, SeedOpt, ThreadsOpt, either, renamed
from audiodiff.schedule_search import DEFAULT_METRIC, METRICS
from audiodiff.searched_schedule import LEGACY_METRIC_NAMES


def _metric_names(option: str, text: Optional[str]) -> list[str]:
    """Comma-separated metric names as keys of METRICS (legacy names renamed, with a note);
    a one-line usage error for any other name."""
    names = []
    for name in (n.strip() for n in (text or "").split(",")):
        if not name:
            continue
        if name in LEGACY_METRIC_NAMES:
            note(f"{option} {name} is deprecated; its name is now {LEGACY_METRIC_NAMES[name]}")
            name = LEGACY_METRIC_NAMES[name]
        if name not in METRICS:
            raise typer.BadParameter(f"{name!r} is not one of {', '.join(METRICS)}", param_hint=f"'{option}'")
        names.append(name)
    return names


_METRIC_CHOICES = ", ".join(f"{key} ({m.better} is better)" for key, m in METRICS.items())


def _complete_metric(incomplete: str) -> list[str]:
    return [k for k in METRICS if k.startswith(incomplete)]


def _metric_option(value: Optional[str]) -> Optional[str]:
    """--metric: one metric's key (a legacy name renamed, with a note)."""
    if value is None:
        return value
    names = _metric_names("--metric", value)
    if len(names) != 1:
        raise typer.BadParameter(f"{value!r}: name one metric (--guard takes several)", param_hint="'--metric'")
    return names[0]


def _guard_option(value: Optional[str]) -> Optional[str]:
    """--guard: comma-separated metric keys (legacy names renamed, with a note)."""
    return None if value is None else ",".join(_metric_names("--guard", value))



schedule_app = typer.Typer(no_args_is_help=True, help="Find few-step sampling schedules for a trained vocoder.")
app.add_typer(schedule_app, name="schedule")


@schedule_app.command("search")
def schedule_search(
    clips: Annotated[list[Path], typer.Argument(help="Held-out audio files or folders to search on (never the clips you report on).")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="Vocoder checkpoint (.pt) to search schedules for.")],
    steps: Annotated[str, typer.Option(help="Comma-separated step counts.")] = "2,3,4,6",
    metric: Annotated[str, typer.Option(help=f"What to rank schedules by: one of `audiodiff eval`'s paired metrics, {_METRIC_CHOICES} (pesq_wb and stoi need the eval extra).", metavar="METRIC", callback=_metric_option, autocompletion=_complete_metric)] = DEFAULT_METRIC,
    guard: Annotated[Optional[str], typer.Option(help=f"Comma-separated metrics, of {', '.join(METRICS)}, that a schedule must not lose on against the recipe's fast schedule (fast_betas: lmnt's 6 steps), e.g. log_mel: one that does not is chosen only if none does.", metavar="METRIC,...", callback=_guard_option, autocompletion=_complete_metric)] = None,
    budget_minutes: Annotated[float, typer.Option(help="Time budget for the whole search, shared by step count.")] = 10.0,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Checkpoint to write (default: CKPT's name + .searched.pt).", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", **renamed("--out", "-o/--output"))] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Allow -o to be the input checkpoint.")] = False,
    default_steps: Annotated[Optional[int], typer.Option(help="Also store this as the step count vocode uses by default.")] = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    gain_adjust: GainAdjustOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Search noise schedules per step count on held-out clips; store the best in a copy of the checkpoint."""
    from audiodiff.devices import set_cpu_threads
    from audiodiff.schedule_search import SearchRequest, prepare_search

    output = either(output, out, "-o/--output", "--out")
    set_cpu_threads(threads)
    job = prepare_search(SearchRequest(checkpoint, clips, steps=steps, metric=metric,
                                       guard=guard.split(",") if guard else (), budget_minutes=budget_minutes,
                                       output=output, overwrite=overwrite, default_steps=default_steps,
                                       device=device, seed=seed, gain_adjust=gain_adjust))
    say(job.vocoder.describe())
    say(job.describe())
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err) as progress:
        task = progress.add_task("search", total=1.0)
        results = job.run(on_progress=lambda f, line: progress.update(task, completed=f, description=line))
    Console().print(_search_table(job, results))
    if any(not r.guard_met for r in results):
        err.print("✗: worse than the fast schedule; no schedule tried at that step count met every guard, "
                  "so the best by the metric is stored")
    err.print(f"Wrote {job.target} (the default rule at 6 steps is the recipe's fast schedule, lmnt's)", highlight=False)



def _search_table(job, results):
    """One row per step count: the schedule found, its score against the baselines' and
    the guards' (✗: worse than the fast schedule), how many candidates were tried."""
    from rich.table import Table

    scorer = job.scorer
    table = Table(title=f"{METRICS[scorer.metric].label} ({scorer.metric}, {METRICS[scorer.metric].better} is better), "
                        f"mean over {len(job.files)} search clip(s), {job.mode}")
    bounds = scorer.bounds()
    guard_columns = [f"searched {g} (fast {bounds[g]:.4f})" for g in scorer.guard]
    for name in ("steps", "searched betas", "sampler", "searched", "default rule", "train sub-sampled", "DDIM",
                 *guard_columns, "tried"):
        table.add_column(name, justify="right" if name not in ("searched betas", "sampler") else "left")
    for r in results:
        b = r.best
        table.add_row(str(r.steps), ", ".join(f"{x:.3g}" for x in b.betas),
                      b.sampler + (f" eta {b.eta:.2f}" if b.sampler == "ddim" else ""), f"{b.score:.3f}",
                      *(f"{r.baselines[k]:.3f}" for k in ("default", "train-subsampled", "ddim")),
                      *(f"{g.score:.4f}" + ("" if g.met else " ✗") for g in b.guard),
                      str(r.evaluations))
    return table
