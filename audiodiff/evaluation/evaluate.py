"""`audiodiff eval`: score a checkpoint against reference audio, with reference points.

Vocoder checkpoints: each reference file is loaded at the model's rate, turned into a
mel with the checkpoint's own transform, and vocoded at each step count (seeded). Each
output is scored against the reference with every paired metric (see
`metrics.PAIR_METRICS`) and rated on its own by DNSMOS (`metrics.CLIP_METRICS`). Two
reference rows come from the same mel in the same run: Griffin-Lim (a floor) and the
reference itself (the ceiling: PESQ 4.64, STOI 1, 0 for the distances; its DNSMOS is
that of the clean clip).

Unconditional checkpoints: `count` clips are generated at each step count and compared
with the reference set by statistics that need no downloaded model (see
`metrics.SET_METRICS`); white noise at the reference's level is the floor, and one half
of the reference set against the other the ceiling. Every row also has the mean DNSMOS
of its clips; a `reference` row has that of excerpts of the reference clips as long as
the generated ones.

Outputs in `out_dir`: results.csv (one row per file and system), results.json (the
same, plus means and run information), audio/ (every scored waveform) and, from
`report.write_report`, report.html with its PNGs in img/.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import math
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from audiodiff.atomic import atomic_path
from audiodiff.audio import AUDIO_SUFFIXES, collect_files, load_audio, save_audio
from audiodiff.checkpoint import Checkpoint, load_checkpoint
from audiodiff.consistency import check_options
from audiodiff.errors import AudiodiffError
from audiodiff.evaluation.baselines import band_griffin_lim, griffin_lim, white_noise
from audiodiff.evaluation.metrics import (CLIP_METRICS, PAIR_METRICS, SET_METRICS, DnsmosScorer, Metric, PairScorer,
                                          require_eval_extra, set_distances, set_features)
from audiodiff.model_info import inherited_schedule_note
from audiodiff.recipe import AudioConfig

DEFAULT_VOCODER_STEPS = (2, 4, 6, 50)
REFERENCE, GRIFFIN_LIM, MODEL, NOISE, HALVES = "reference", "griffin_lim", "model", "white_noise", "reference_halves"
BAND_GRIFFIN_LIM = "band_griffin_lim"
SYSTEM_LABELS = {REFERENCE: "reference", GRIFFIN_LIM: "Griffin-Lim", BAND_GRIFFIN_LIM: "Griffin-Lim, band gains",
                 NOISE: "white noise", HALVES: "reference (half vs half)"}
MAX_SAVED_REFERENCES = 8  # unconditional: reference clips copied into the report
VOCODER_METRICS = PAIR_METRICS + CLIP_METRICS
GENERATOR_METRICS = SET_METRICS + CLIP_METRICS


def system_label(system: str, steps: int | None) -> str:
    return f"{steps} steps" if system == MODEL else SYSTEM_LABELS.get(system, system)


@dataclass
class EvalResult:
    """What `evaluate` produced; `rows` and `means` are lists of plain dicts."""
    kind: str                       # "vocoder" or "generator"
    out_dir: Path
    metrics: tuple[Metric, ...]
    rows: list[dict]                # vocoder: per file and system; generator: per system
    means: list[dict]               # per system: mean over files (generator: = rows)
    meta: dict
    files: list[str] = field(default_factory=list)
    csv_path: Path | None = None
    json_path: Path | None = None
    report_path: Path | None = None


def parse_steps(text: str | Sequence[int] | None) -> list[int] | None:
    """'2,4,6' -> [2, 4, 6] (sorted, unique, each >= 1); None stays None."""
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        steps = sorted({int(str(s).strip()) for s in items if str(s).strip()})
    except ValueError:
        raise AudiodiffError(f"--steps {text!r}: expected a comma-separated list of integers, e.g. 2,4,6") from None
    if not steps or steps[0] < 1:
        raise AudiodiffError(f"--steps {text!r}: step counts must be integers >= 1")
    return steps


def collect_audio(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders expanded to the audio files below them (sorted):
    `audio.collect_files`, which `vocode` uses too; an error when there are none."""
    out = collect_files(paths, AUDIO_SUFFIXES, "audio files")
    if not out:
        raise AudiodiffError("no reference audio given")
    return out


def _unique_names(paths: Sequence[Path]) -> list[str]:
    names, seen = [], {}
    for p in paths:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", p.stem) or "clip"
        n = seen.get(base, 0)
        seen[base] = n + 1
        names.append(base if n == 0 else f"{base}-{n}")
    return names


@dataclass(frozen=True)
class EvalRequest:
    """What `audiodiff eval` is asked to do, every option in one typed record.

    `steps`: step counts (vocoder default 2, 4, 6, 50; generator default the training
    schedule's length). `count`/`seconds`: clips generated per step count by an
    unconditional model (default length: the median reference length, at most 10 s).
    `gain_adjust`, `refine`: a vocoder's mel consistency, as in `Vocoder.vocode`;
    `sampler` and `precision` (the network's autocast: fp32, bf16, fp16) as in `vocode`
    and `sample`.
    """
    checkpoint: str | Path
    references: Sequence[str | Path]
    out_dir: str | Path
    steps: Sequence[int] | None = None
    seed: int = 0
    device: str = "cpu"
    sampler: str | None = None
    precision: str = "fp32"
    count: int = 8
    seconds: float | None = None
    gain_adjust: bool | None = None
    refine: int | None = None


@dataclass
class _Run:
    """One evaluation's inputs, checked and loaded: the request, the checkpoint, the
    reference files and their audio at the model's rate, the run information so far."""
    request: EvalRequest
    data: Checkpoint
    files: list[Path]
    clips: list[np.ndarray]
    meta: dict
    log: Callable[[str], None]

    @property
    def out_dir(self) -> Path:
        return Path(self.request.out_dir)


def evaluate(request: EvalRequest, log: Callable[[str], None] = lambda _msg: None) -> EvalResult:
    """Evaluate a checkpoint (vocoder or generator) as `request` says and write CSV and
    JSON to its `out_dir`. Every input is read before any work; the first line logged is
    the model's (`Vocoder.describe`)."""
    r = request
    data = load_checkpoint(r.checkpoint)
    files = collect_audio(r.references)
    require_eval_extra()
    sr = data.recipe.audio.sample_rate
    clips = [load_audio(f, sr) for f in files]  # read all first: a bad file fails before any work
    meta = dict(checkpoint=str(r.checkpoint), step=int(data.step), sample_rate=sr,
                preset=data.recipe.audio.preset, seed=r.seed, sampler=r.sampler, precision=r.precision,
                device=str(r.device), torch_version=torch.__version__,
                timestamp=time.strftime("%Y-%m-%dT%H:%M:%S%z"), references=[str(f) for f in files])
    check_options(r.gain_adjust, r.refine, data.recipe.model.conditional, str(r.checkpoint))
    run = _Run(r, data, files, clips, meta, log)
    result = _evaluate_vocoder(run) if data.recipe.model.conditional else _evaluate_generator(run)
    write_tables(result)
    return result


def _timing(compute_s: float | None, audio_s: float) -> dict:
    """A row's compute seconds and real-time factor (None where not timed)."""
    return dict(compute_s=None if compute_s is None else round(compute_s, 4),
                rtf=None if compute_s is None or audio_s <= 0 else round(compute_s / audio_s, 4))


def _row(file: str, system: str, steps: int | None, scores: dict, audio: str | list[str], **extra) -> dict:
    """One results row: `extra` is the row's `_timing` first, then anything else (clips)."""
    return dict(file=file, system=system, steps=steps, label=system_label(system, steps), audio=audio,
                **extra, **scores)


def _log_inherited(plans, log: Callable[[str], None]) -> None:
    """A note for each plan whose schedule was searched on a parent model's weights."""
    for plan in plans:
        if text := inherited_schedule_note(plan):
            log(f"note: {text}")


def _evaluate_vocoder(run: _Run) -> EvalResult:
    from audiodiff.inference import Vocoder

    r, out_dir, files, log = run.request, run.out_dir, run.files, run.log
    steps = r.steps or DEFAULT_VOCODER_STEPS
    vocoder = Vocoder.from_checkpoint_data(run.data, str(r.checkpoint), r.device, precision=r.precision)
    plan = functools.partial(vocoder.plan, sampler=r.sampler, gain_adjust=r.gain_adjust, refine=r.refine)
    plans = {n: plan(steps=n) for n in steps}  # bad values fail here
    log(vocoder.describe())
    _log_inherited(plans.values(), log)
    cfg, sr = vocoder.recipe.audio, vocoder.sample_rate
    rows, names = [], _unique_names(files)
    dnsmos = DnsmosScorer()
    # one short untimed vocode first, so that the first timed one does not pay for the
    # allocator's and the kernels' first use (`compute_s`/`rtf` are indicative; bench measures speed)
    vocoder.vocode(vocoder.mel(run.clips[0][:sr]).cpu(), plan(steps=1), seed=r.seed)
    for path, name, wav in zip(files, names, run.clips):
        audio_s = len(wav) / sr
        log(f"{path} ({audio_s:.2f} s)")
        scorer = PairScorer(wav, sr, cfg)
        mel = vocoder.mel(wav).cpu()

        def keep(system: str, n: int | None, out: np.ndarray | torch.Tensor, dt: float | None) -> None:
            rel = f"audio/{name}/{system if n is None else f'steps-{n}'}.wav"
            save_audio(out_dir / rel, out, sr)
            t0 = time.perf_counter()
            fitted = scorer.fit(out)
            rows.append(_row(name, system, n, {**scorer.score(fitted), **dnsmos.score(fitted, sr)}, rel,
                             **_timing(dt, audio_s)))
            log(f"  {system_label(system, n)}: scored in {time.perf_counter() - t0:.1f} s")

        keep(REFERENCE, None, wav, None)
        t0 = time.perf_counter()
        gl = griffin_lim(mel, cfg, len(wav), seed=r.seed)
        keep(GRIFFIN_LIM, None, gl, time.perf_counter() - t0)
        t0 = time.perf_counter()
        band = band_griffin_lim(mel, cfg, len(wav), seed=r.seed, transform=vocoder.mel_transform)
        keep(BAND_GRIFFIN_LIM, None, band, time.perf_counter() - t0)
        for n in steps:
            t0 = time.perf_counter()
            out = vocoder.vocode(mel, plans[n], seed=r.seed, name=str(path))[:len(wav)]
            keep(MODEL, n, out, time.perf_counter() - t0)
    run.meta.update(kind="vocoder", steps=list(steps), files=len(files),
                    sampling={str(n): plans[n].describe() for n in steps})
    return EvalResult("vocoder", out_dir, VOCODER_METRICS, rows, _means(rows, VOCODER_METRICS), run.meta, names)


def _means(rows: list[dict], metrics: Sequence[Metric]) -> list[dict]:
    order: dict[tuple, list[dict]] = {}
    for r in rows:
        order.setdefault((r["system"], r["steps"]), []).append(r)
    means = []
    for (system, steps), group in order.items():
        m = dict(system=system, steps=steps, label=system_label(system, steps), files=len(group))
        for metric in list(metrics) + [Metric("compute_s", "", ""), Metric("rtf", "", "")]:
            vals = [r[metric.key] for r in group if r.get(metric.key) is not None and not math.isnan(r[metric.key])]
            m[metric.key] = float(np.mean(vals)) if vals else None
        means.append(m)
    return means


def excerpt(clip: np.ndarray, samples: int) -> np.ndarray:
    """The middle `samples` of a clip [n] (all of it when shorter): a reference cut to the
    generated clips' length, away from the leading and trailing silence of speech."""
    start = max(0, (len(clip) - samples) // 2)
    return clip[start:start + samples]


def _evaluate_generator(run: _Run) -> EvalResult:
    from audiodiff.inference import Generator

    r, clips = run.request, run.clips
    generator = Generator.from_checkpoint_data(run.data, str(r.checkpoint), r.device, precision=r.precision)
    sr = generator.sample_rate
    if r.count < 1:
        raise AudiodiffError("-n/--count must be >= 1")
    seconds = r.seconds
    if seconds is None:
        seconds = min(10.0, max(0.25, statistics.median(len(c) / sr for c in clips)))
    if seconds <= 0:
        raise AudiodiffError("--seconds must be positive")
    steps = list(r.steps or [generator.plan().steps])
    plans = {n: generator.plan(steps=n, sampler=r.sampler) for n in steps}  # bad values fail here
    run.log(generator.describe())
    _log_inherited(plans.values(), run.log)
    run.log(f"{len(clips)} reference clips; generating {r.count} x {seconds:.2f} s at "
            f"{', '.join(map(str, steps))} steps")
    scoring = _SetScoring(generator.recipe.audio, sr, set_features(clips, generator.recipe.audio), DnsmosScorer())
    names = _unique_names(run.files)
    rows = _generator_floor_rows(run, scoring, names, int(round(seconds * sr)))
    for n in steps:
        t0 = time.perf_counter()
        made = generator.generate(seconds, count=r.count, plan=plans[n], seed=r.seed)
        dt = time.perf_counter() - t0
        rel = _save_clips(run.out_dir, f"audio/steps-{n}", made, sr)
        rows.append(_row("", MODEL, n, scoring.scores(made.numpy()), rel, **_timing(dt, r.count * seconds),
                         clips=r.count))
        run.log(f"  {n} steps: {r.count} clips in {dt:.1f} s")
    run.meta.update(kind="generator", steps=steps, count=r.count, seconds=seconds, reference_clips=len(clips),
                    sampling={str(n): plans[n].describe() for n in steps})
    means = [dict(row, files=row["clips"]) for row in rows]
    return EvalResult("generator", run.out_dir, GENERATOR_METRICS, rows, means, run.meta, names)


@dataclass(frozen=True)
class _SetScoring:
    """Scores a set of clips against the reference set: the set statistics and the mean DNSMOS."""
    config: AudioConfig
    sample_rate: int
    reference: dict
    dnsmos: DnsmosScorer

    def scores(self, clips: np.ndarray) -> dict:
        return {**set_distances(set_features(clips, self.config), self.reference),
                **self.dnsmos.mean(clips, self.sample_rate)}


def _save_clips(out_dir: Path, folder: str, clips, sr: int, limit: int | None = None) -> list[str]:
    """Write `clips` (the first `limit`) as FOLDER/clip-<i>.wav below `out_dir`; their relative paths."""
    rel = []
    for i, clip in enumerate(clips if limit is None else clips[:limit]):
        rel.append(f"{folder}/clip-{i}.wav")
        save_audio(out_dir / rel[-1], clip, sr)
    return rel


def _generator_floor_rows(run: _Run, scoring: _SetScoring, names: list[str], length: int) -> list[dict]:
    """The reference points of a generator's table: the reference clips (DNSMOS of excerpts
    `length` long), one half of them against the other, and white noise at their level."""
    r, clips, cfg, sr = run.request, run.clips, scoring.config, scoring.sample_rate
    ref_audio = []
    for name, clip in zip(names[:MAX_SAVED_REFERENCES], clips):
        ref_audio.append(f"audio/reference/{name}.wav")
        save_audio(run.out_dir / ref_audio[-1], clip, sr)
    no_set = {m.key: None for m in SET_METRICS}  # the reference against itself: nothing to measure
    untimed = _timing(None, 0.0)
    rows = [_row("", REFERENCE, None, {**no_set, **scoring.dnsmos.mean((excerpt(c, length) for c in clips), sr)},
                 ref_audio, **untimed, clips=len(clips))]
    if len(clips) >= 2:
        halves = set_distances(set_features(clips[1::2], cfg), set_features(clips[0::2], cfg))
        rows.append(_row("", HALVES, None, {**halves, **{m.key: None for m in CLIP_METRICS}}, ref_audio,
                         **untimed, clips=len(clips)))
    level = float(np.median([np.sqrt(np.mean(np.square(c))) for c in clips]))
    noise = white_noise(r.count, length, level, r.seed)
    noise_audio = _save_clips(run.out_dir, "audio/white_noise", noise, sr, limit=MAX_SAVED_REFERENCES)
    rows.append(_row("", NOISE, None, scoring.scores(noise), noise_audio, **untimed, clips=r.count))
    return rows


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_tables(result: EvalResult) -> None:
    """results.csv (one row per file and system) and results.json (rows, means, run info)."""
    keys = (["file", "system", "steps", "label"] + (["clips"] if result.kind == "generator" else [])
            + [m.key for m in result.metrics] + ["compute_s", "rtf", "audio"])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in result.rows:
        writer.writerow({k: (";".join(v) if isinstance(v, list) else ("" if v is None else v))
                         for k, v in _clean(r).items()})
    result.csv_path = result.out_dir / "results.csv"
    with atomic_path(result.csv_path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    doc = dict(meta=result.meta, metrics=[dict(key=m.key, label=m.label, better=m.better, unit=m.unit)
                                          for m in result.metrics],
               means=result.means, rows=result.rows)
    result.json_path = result.out_dir / "results.json"
    with atomic_path(result.json_path) as tmp:
        tmp.write_text(json.dumps(_clean(doc), indent=2, allow_nan=False) + "\n", encoding="utf-8")
