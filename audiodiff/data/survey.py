"""From a recipe to the clips a run trains on, applying the bad-data rules.

`survey_data` lists the recipe's data set (its layout), reads every file once
(`scan.scan_files`) and sorts the files into usable, bad (unreadable, empty, NaN,
silent), too brief (under `data.min_seconds`) and shorter than a segment. `audiodiff
data check` prints a survey; `prepare_training_data` turns one into the run's
train/validation clips:

* each bad or too-brief file is skipped with a warning naming it, and the count is
  reported; if more than `data.max_bad_fraction` of the files are bad, training
  refuses to start;
* clips shorter than `train.segment` are kept (and zero-padded) or, with
  `data.skip_short`, skipped;
* clips needing resampling are pointed at their cached copy where one exists;
* the split is the data set's own (maestro, sc09) or a random one, saved as the
  run's `split.json` and reused on resume.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from audiodiff.atomic import atomic_path
from audiodiff.data.cache import attach_cache
from audiodiff.data.scan import PROBLEMS, FileScan, scan_files
from audiodiff.data.sources import Clip, SourceFile, data_root, list_files, split_clips
from audiodiff.errors import AudiodiffError
from audiodiff.recipe import Recipe

#: At most this many skipped files are named one by one at the start of training;
#: all of them are listed in the run folder's `skipped.txt`.
WARN_LIMIT = 50
PROBLEM_LABELS = {"unreadable": "unreadable", "empty": "empty", "nan": "NaN/inf samples", "silent": "silent"}


@dataclass
class Survey:
    """A data set as one recipe sees it (test files of the data set are left out)."""
    recipe: Recipe
    root: Path
    files: list[SourceFile]                        # everything the layout names, test included
    scans: list[FileScan] = field(default_factory=list)  # the non-test files, in order

    @property
    def rate(self) -> int:
        return self.recipe.audio.sample_rate

    @property
    def segment(self) -> int:
        return self.recipe.train.segment

    @property
    def used(self) -> list[SourceFile]:
        return [f for f in self.files if f.split != "test"]

    @property
    def test_count(self) -> int:
        return sum(f.split == "test" for f in self.files)

    @property
    def bad(self) -> list[FileScan]:
        return [s for s in self.scans if not s.ok]

    def bad_of(self, problem: str) -> list[FileScan]:
        return [s for s in self.scans if s.problem == problem]

    @property
    def too_brief(self) -> list[FileScan]:
        """Readable files under `data.min_seconds`: skipped, but not counted as bad."""
        limit = self.recipe.data.min_seconds
        return [s for s in self.scans if s.ok and s.seconds < limit]

    @property
    def readable(self) -> list[FileScan]:
        """Files that decode, whatever else is wrong with them (for rates and channels)."""
        return [s for s in self.scans if s.problem != "unreadable"]

    @property
    def usable(self) -> list[FileScan]:
        """Good files at least `data.min_seconds` long (shorter-than-segment ones included)."""
        limit = self.recipe.data.min_seconds
        return [s for s in self.scans if s.ok and s.seconds >= limit]

    @property
    def short(self) -> list[FileScan]:
        """Usable files shorter than a segment at the model's rate (padded, or skipped)."""
        return [s for s in self.usable if s.frames * self.rate // s.sample_rate < self.segment]

    @property
    def bad_fraction(self) -> float:
        return len(self.bad) / len(self.scans) if self.scans else 0.0

    @property
    def splits(self) -> dict[str, str]:
        """Path -> the data set's own split, for sources that have one."""
        return {str(f.path): f.split for f in self.files if f.split is not None}

    def clips(self) -> list[Clip]:
        """The clips training may use: usable, minus short ones where `data.skip_short`."""
        skip = {s.path for s in self.short} if self.recipe.data.skip_short else set()
        return [Clip(s.path, s.sample_rate, s.frames) for s in self.usable if s.path not in skip]

    def rates(self) -> Counter:
        return Counter(s.sample_rate for s in self.readable)

    def channels(self) -> Counter:
        return Counter(s.channels for s in self.readable)

    def seconds(self) -> float:
        return sum(s.seconds for s in self.usable)

    def skipped(self) -> list[tuple[FileScan, str]]:
        """(file, reason) for every file training leaves out, in data set order."""
        short = {s.path for s in self.short} if self.recipe.data.skip_short else set()
        out = []
        for s in self.scans:
            if not s.ok:
                out.append((s, s.describe()))
            elif s.seconds < self.recipe.data.min_seconds:
                out.append((s, f"shorter than data.min_seconds = {self.recipe.data.min_seconds} s ({s.seconds:.3f} s)"))
            elif s.path in short:
                out.append((s, f"shorter than a segment ({s.seconds:.2f} s) and data.skip_short is set"))
        return out

    def refusal(self) -> str | None:
        """Why training cannot start on this data set, or None."""
        data = self.recipe.data
        if not self.scans:
            return f"data.root {self.root}: only test files found (source {data.source!r})"
        if self.bad_fraction > data.max_bad_fraction:
            kinds = ", ".join(f"{len(self.bad_of(p))} {PROBLEM_LABELS[p]}" for p in PROBLEMS if self.bad_of(p))
            return (f"data.root {self.root}: {len(self.bad)} of {len(self.scans)} files are unusable "
                    f"({kinds}): {self.bad_fraction:.1%} is more than data.max_bad_fraction = "
                    f"{data.max_bad_fraction:g}; fix or remove them (`audiodiff data check` names them), "
                    f"or raise data.max_bad_fraction")
        if not self.clips():
            return (f"data.root {self.root}: nothing usable: all {len(self.scans)} files were skipped "
                    f"({self.summary()})")
        return None

    def skip_reasons(self) -> list[str]:
        """e.g. ['1 unreadable', '1 silent', '2 shorter than min_seconds']."""
        parts = [f"{len(self.bad_of(p))} {PROBLEM_LABELS[p]}" for p in PROBLEMS if self.bad_of(p)]
        if self.too_brief:
            parts.append(f"{len(self.too_brief)} shorter than min_seconds")
        if self.recipe.data.skip_short and self.short:
            parts.append(f"{len(self.short)} shorter than a segment")
        return parts

    def summary(self) -> str:
        """e.g. '3 skipped: 1 unreadable, 1 silent, 1 shorter than min_seconds'."""
        parts = self.skip_reasons()
        return f"{len(self.skipped())} skipped" + (f": {', '.join(parts)}" if parts else "")


def survey_data(recipe: Recipe, on_file: Callable[[FileScan], None] | None = None,
                scan_cache: Path | None = None, on_listed: Callable[[int], None] | None = None) -> Survey:
    """List the recipe's data set and read every non-test file once."""
    root = data_root(recipe.data)
    survey = Survey(recipe, root, list_files(recipe.data))
    if on_listed is not None:
        on_listed(len(survey.used))
    survey.scans = scan_files([f.path for f in survey.used], on_file=on_file, cache_file=scan_cache)
    return survey


def scan_progress(console: Console, description: str = "scan") -> Progress:
    """The progress bar shown while files are read."""
    return Progress(TextColumn(f"[bold]{description}"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                    TimeElapsedColumn(), console=console, transient=True)


def survey_with_progress(recipe: Recipe, console: Console | None, scan_cache: Path | None = None) -> Survey:
    """`survey_data` with a rich progress bar on `console` (none if console is None)."""
    if console is None:
        return survey_data(recipe, scan_cache=scan_cache)
    with scan_progress(console) as progress:
        task = progress.add_task("scan", total=None)
        return survey_data(recipe, scan_cache=scan_cache,
                           on_listed=lambda n: progress.update(task, total=n),
                           on_file=lambda _: progress.advance(task))


@dataclass
class TrainingData:
    """What a run trains and validates on, and what was left out."""
    train: list[Clip]
    validation: list[Clip]
    survey: Survey
    cached: int        # clips read from the resampled cache
    resampled: int     # clips at another rate than the model's (cached or not)

    def describe(self) -> str:
        text = f"{len(self.train)} training clips, {len(self.validation)} validation clips ({self.survey.summary()})"
        if self.resampled:
            text += (f"; {self.resampled} resampled to {self.survey.rate} Hz, "
                     f"{self.cached} from the cache, {self.resampled - self.cached} on the fly")
        return text


def prepare_training_data(recipe: Recipe, out_dir: str | Path, warn: Callable[[str], None],
                          console: Console | None = None) -> TrainingData:
    """Survey the data set, apply the bad-data rules, split; see the module docstring.

    Writes `split.json` (reused on resume), `data-scan.json` (so a resumed run does not
    read unchanged files again) and, if any file is skipped, `skipped.txt` in `out_dir`.
    Raises AudiodiffError if training cannot start.
    """
    out = Path(out_dir)
    if console is not None:
        console.print(f"Scanning data: {recipe.data.source} at {recipe.data.root}")
    survey = survey_with_progress(recipe, console, scan_cache=out / "data-scan.json")
    skipped = survey.skipped()
    (out / "skipped.txt").unlink(missing_ok=True)
    for scan, reason in skipped[:WARN_LIMIT]:
        warn(f"skipping {scan.path}: {reason}")
    if skipped:
        with atomic_path(out / "skipped.txt") as tmp:
            tmp.write_text("".join(f"{s.path}\t{r}\n" for s, r in skipped), encoding="utf-8")
        more = f", {len(skipped) - WARN_LIMIT} of them not named above" if len(skipped) > WARN_LIMIT else ""
        warn(f"skipped {len(skipped)} of {len(survey.scans)} files ({', '.join(survey.skip_reasons())}){more}; "
             f"all listed in {out / 'skipped.txt'}")
    problem = survey.refusal()
    if problem:
        raise AudiodiffError(problem)
    clips, cached, resampled = attach_cache(survey.clips(), recipe.data.cache_dir, recipe.data.root,
                                            recipe.audio.sample_rate)
    train, validation = split_clips(clips, recipe.data.validation_count, recipe.train.seed,
                                    out / "split.json", survey.splits)
    if not train:
        raise AudiodiffError(f"data.root {recipe.data.root}: no clips left for training")
    return TrainingData(train, validation, survey, cached, resampled)
