"""`audiodiff data check`: what a recipe's data set holds, before hours of training.

`run_check` surveys the data set with a progress bar, optionally writes the
resampled cache, prints a table (files, duration, rates, channels, clips shorter than
a segment, bad files by kind, split, resampling) and names the problem files. It
raises AudiodiffError when training could not start: nothing usable, or more bad
files than `data.max_bad_fraction` allows.
"""
from __future__ import annotations

import statistics

from rich.console import Console
from rich.table import Table

from audiodiff.data.cache import attach_cache, write_cache
from audiodiff.data.scan import PROBLEMS
from audiodiff.data.survey import PROBLEM_LABELS, Survey, scan_progress, survey_with_progress
from audiodiff.errors import AudiodiffError
from audiodiff.recipe import Recipe


def run_check(recipe: Recipe, name: str, out: Console, err: Console, write: bool = False,
              show: int = 20) -> Survey:
    """Survey, optionally write the cache, print the table and problem files; raise if unusable."""
    survey = survey_with_progress(recipe, err)
    data = recipe.data
    if write:
        if not data.cache_dir:
            raise AudiodiffError("--write-cache needs a cache folder: set data.cache_dir in the recipe "
                                 "or pass --set data.cache_dir=DIR")
        clips = survey.clips()
        todo = sum(c.sample_rate != survey.rate for c in clips)
        with scan_progress(err, "resample") as progress:
            task = progress.add_task("resample", total=todo)
            written, kept = write_cache(clips, data.cache_dir, data.root, survey.rate,
                                        on_file=lambda _: progress.advance(task))
        err.print(f"Cache {data.cache_dir}: {written} files written, {kept} already there "
                  f"({survey.rate} Hz, 16-bit WAV)")
    out.print(check_table(survey, name))
    for line in problem_lines(survey, show):
        out.print(line, highlight=False, soft_wrap=True)
    problem = survey.refusal()
    if problem:
        raise AudiodiffError(problem)
    return survey


def check_table(survey: Survey, name: str) -> Table:
    """The rich table `audiodiff data check` prints."""
    data = survey.recipe.data
    table = Table(title=f"Data check: {name}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("source", f"{data.source} at {survey.root}")
    n, usable = len(survey.scans), survey.usable
    test = f"; {survey.test_count} test files not used" if survey.test_count else ""
    table.add_row("files", f"{n} ({len(usable)} usable{test})")
    seconds = survey.seconds()
    table.add_row("duration", f"{seconds / 3600:.2f} h = {seconds / 60:.2f} min (usable files)")
    if usable:
        lengths = [s.seconds for s in usable]
        table.add_row("clip lengths", f"{min(lengths):.2f} to {max(lengths):.2f} s, median {statistics.median(lengths):.2f} s")
    table.add_row("sample rates", _counts(survey.rates(), lambda r: f"{r} Hz") or "-")
    table.add_row("channels", _counts(survey.channels(), _channel_name) or "-")
    table.add_row("model rate", _resampling(survey))
    seg = survey.segment
    fate = "skipped (data.skip_short)" if data.skip_short else "zero-padded"
    table.add_row("shorter than a segment",
                  f"{len(survey.short)} ({seg} samples = {seg / survey.rate:.2f} s at {survey.rate} Hz; {fate})")
    table.add_row("shorter than min_seconds", f"{len(survey.too_brief)} (< {data.min_seconds} s; skipped)")
    for problem in PROBLEMS:
        count = len(survey.bad_of(problem))
        table.add_row(PROBLEM_LABELS[problem], f"[red]{count}[/]" if count else "0")
    table.add_row("bad files", f"{len(survey.bad)} = {survey.bad_fraction:.1%} "
                               f"(training refuses above data.max_bad_fraction = {data.max_bad_fraction:g})")
    table.add_row("split", _split(survey))
    problem = survey.refusal()
    if problem:
        table.add_row("verdict", "[red]not usable[/]: training would refuse to start")
    else:
        clips = survey.clips()
        table.add_row("verdict", f"[green]ready[/]: {len(clips)} clips to train on "
                                 f"({sum(c.frames / c.sample_rate for c in clips) / 60:.2f} min)")
    return table


def problem_lines(survey: Survey, show: int = 20) -> list[str]:
    """One line per bad, too brief or too short file (at most `show` of each kind)."""
    groups = [(PROBLEM_LABELS[p], [(s, s.describe()) for s in survey.bad_of(p)]) for p in PROBLEMS]
    groups.append(("shorter than min_seconds", [(s, f"{s.seconds:.3f} s") for s in survey.too_brief]))
    fate = "skipped" if survey.recipe.data.skip_short else "zero-padded"
    groups.append((f"shorter than a segment ({fate})", [(s, f"{s.seconds:.2f} s") for s in survey.short]))
    lines = []
    for label, items in groups:
        if not items:
            continue
        lines.append(f"{label}: {len(items)} file{'s' if len(items) != 1 else ''}")
        lines.extend(f"  {scan.path}: {reason}" for scan, reason in items[:show])
        if len(items) > show:
            lines.append(f"  ... and {len(items) - show} more")
    return lines


def _counts(counter, label) -> str:
    return ", ".join(f"{label(k)}: {v} files" for k, v in sorted(counter.items()))


def _channel_name(n: int) -> str:
    return {1: "mono", 2: "stereo"}.get(n, f"{n} channels")


def _resampling(survey: Survey) -> str:
    data = survey.recipe.data
    clips, cached, need = attach_cache(survey.clips(), data.cache_dir, data.root, survey.rate)
    if not need:
        return f"{survey.rate} Hz (no resampling)"
    sources = sorted({c.sample_rate for c in clips if c.sample_rate != survey.rate})
    text = f"{survey.rate} Hz: {need} files resampled from {', '.join(f'{r} Hz' for r in sources)}"
    if data.cache_dir:
        text += f"; {cached} of {need} cached in {data.cache_dir}"
        if cached < need:
            text += f", {need - cached} on the fly (--write-cache to cache them)"
    else:
        text += " on the fly (set data.cache_dir and use --write-cache to cache them)"
    return text


def _split(survey: Survey) -> str:
    clips = survey.clips()
    splits = survey.splits
    own_val = [c for c in clips if splits.get(str(c.path)) == "validation"]
    if own_val:
        train = sum(splits.get(str(c.path), "train") == "train" for c in clips)
        return f"the data set's own: {train} train, {len(own_val)} validation clips"
    count = min(survey.recipe.data.validation_count, max(0, len(clips) - 1))
    return f"random (seed {survey.recipe.train.seed}): {len(clips) - count} train, {count} validation clips"
