"""`audiodiff eval` and `bench`: score a checkpoint against references, measure its speed."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from audiodiff.atomic import check_writable
from audiodiff.cli.app import app, err, say
from audiodiff.cli.options import (CheckpointOpt, DeviceOpt, GainAdjustOpt, PrecisionOpt, RefineOpt, SamplerOpt,
                                   SeedOpt, ThreadsOpt, either, renamed)
from audiodiff.errors import AudiodiffError


@app.command("eval")
def eval_(
    references: Annotated[list[Path], typer.Argument(help="Reference audio files or folders (folders: every audio file below).")],
    checkpoint: CheckpointOpt = None,
    steps: Annotated[Optional[str], typer.Option(help="Comma-separated step counts. Default: 2,4,6,50 for a vocoder, the training schedule's length for a generator.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Output folder (default eval/<checkpoint stem>): results.csv, results.json, report.html, img/, audio/.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", **renamed("--out", "--out-dir"))] = None,
    count: Annotated[int, typer.Option("-n", "--count", help="Unconditional models: clips generated per step count.")] = 8,
    seconds: Annotated[Optional[float], typer.Option(help="Unconditional models: length of each clip (default: the median reference length, at most 10 s).")] = None,
    sampler: SamplerOpt = None,
    precision: PrecisionOpt = "fp32",
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    gain_adjust: GainAdjustOpt = None,
    refine: RefineOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Score a checkpoint against reference audio at several step counts; write CSV, JSON and report.html."""
    from audiodiff.devices import set_cpu_threads
    from audiodiff.evaluation.evaluate import EvalRequest, evaluate, parse_steps
    from audiodiff.evaluation.report import write_report
    from audiodiff.pretrained import default_checkpoint

    out_dir = either(out_dir, out, "--out-dir", "--out")
    set_cpu_threads(threads)
    counts = parse_steps(steps)
    ckpt = checkpoint or default_checkpoint("vocoder")
    out_dir = out_dir or Path("eval") / ckpt.stem
    check_writable(out_dir)
    request = EvalRequest(ckpt, references, out_dir, steps=counts, seed=seed, device=device, sampler=sampler,
                          precision=precision, count=count, seconds=seconds, gain_adjust=gain_adjust, refine=refine)
    result = evaluate(request, log=say)
    write_report(result)
    Console().print(_eval_table(result, ckpt))
    err.print(f"CSV: {result.csv_path}\nJSON: {result.json_path}\nReport: {result.report_path}", highlight=False)



def _eval_table(result, ckpt: Path):
    """The mean scores per system (rows) and metric (columns), with the real-time factor."""
    from rich.table import Table

    from audiodiff.evaluation.metrics import format_value

    table = Table(title=f"{ckpt}: mean over {len(result.files)} reference file(s)" if result.kind == "vocoder"
                  else f"{ckpt}: {result.meta['count']} generated clip(s) per row vs {len(result.files)} reference clip(s)")
    table.add_column("system", no_wrap=True)
    table.add_column("n", justify="right")
    for m in result.metrics:
        arrow = {"lower": " ↓", "higher": " ↑"}.get(m.better, "")
        table.add_column(f"{m.label}{' ' + m.unit if m.unit else ''}{arrow}", justify="right")
    table.add_column("RTF", justify="right")
    for row in result.means:
        cells = [format_value(row.get(k), k) for k in [m.key for m in result.metrics] + ["rtf"]]
        table.add_row(row["label"], str(row["files"]), *cells)
    return table


@app.command()
def bench(
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", "-c", help="Checkpoint (.pt) to measure.")] = None,
    recipe: Annotated[Optional[str], typer.Option(help="A shipped recipe's name or a recipe TOML file: measure its model with random weights (before training).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe value: section.key=value (repeatable).")] = None,
    seconds: Annotated[float, typer.Option(help="Seconds of audio per run.")] = 10.0,
    steps: Annotated[str, typer.Option(help="Comma-separated step counts.")] = "1,2,4,6",
    runs: Annotated[int, typer.Option(help="Timed runs per step count (the median is reported).")] = 3,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up runs per step count.")] = 1,
    sampler: SamplerOpt = None,
    precision: PrecisionOpt = "fp32",
    threads: ThreadsOpt = None,
    device: DeviceOpt = "auto",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the results as JSON to this file.", show_default=False)] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", **renamed("--json", "-o/--output"))] = None,
    gain_adjust: GainAdjustOpt = None,
    refine: RefineOpt = None,
) -> None:
    """Real-time factor and peak memory of vocoding (or unconditional sampling) per step count."""
    from audiodiff.evaluation.bench import BenchRequest, run_bench
    from audiodiff.evaluation.evaluate import parse_steps

    output = either(output, json_path, "-o/--output", "--json")
    if set_ and recipe is None:
        raise AudiodiffError("--set applies to --recipe only")
    if output is not None:
        check_writable(output.parent)
    request = BenchRequest(checkpoint=checkpoint, recipe=recipe, overrides=list(set_ or []),
                           steps=parse_steps(steps), seconds=seconds, runs=runs, warmup=warmup, threads=threads,
                           device=device, json_path=output, gain_adjust=gain_adjust, refine=refine,
                           precision=precision, sampler=sampler)
    doc = run_bench(request, log=say)
    out = Console()
    out.print(_bench_header(doc), highlight=False)
    out.print(_bench_table(doc))
    if output:
        err.print(f"JSON: {output}", highlight=False)



def _bench_header(doc: dict) -> str:
    """What was measured, where and how: the lines above bench's table."""
    meta, first = doc["meta"], doc["results"][0]
    return (f"{meta['task']} {meta['seconds']:g} s of audio · device {meta['device']} "
            f"({meta.get('gpu', meta['cpu_model'])}, {meta['nproc']} cores) · {meta['threads']} thread(s) · "
            f"{meta['precision']} · sampler {first['sampler']} · torch {meta['torch_version']}\n"
            f"model: {meta['model']}, {meta['n_params'] / 1e6:.2f} M parameters, "
            f"{meta['source']} · median of {meta['runs']} run(s) after {meta['warmup']} warm-up"
            + (f"\nmel consistency: gain adjustment {'on' if first['gain_adjust'] else 'off'}, "
               f"{first['refine']} refinement iterations" if meta["task"] == "vocode" else ""))


def _bench_table(doc: dict):
    """One row per step count: runs, median seconds, RTF, times real time, peak memory."""
    from rich.table import Table

    table = Table()
    for name in ("steps", "runs", "median s", "RTF", "x real time", "peak RSS GiB"):
        table.add_column(name, justify="right")
    cuda = any("cuda_peak_gib" in r for r in doc["results"])
    if cuda:
        table.add_column("CUDA peak GiB", justify="right")
    for r in doc["results"]:
        cells = [str(r["steps"]), str(r["runs"]), f"{r['median_s']:.2f}", f"{r['rtf']:.3f}",
                 f"{1 / r['rtf']:.1f}", f"{r['peak_rss_gib']:.2f}"]
        table.add_row(*cells, *([f"{r.get('cuda_peak_gib', 0):.2f}"] if cuda else []))
    return table
