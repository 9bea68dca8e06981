"""Search few-step sampling schedules for a trained vocoder on held-out clips.

The network is conditioned on a continuous noise level, so any schedule can be used
without retraining; which one is best for N steps is an empirical question (WaveGrad
chose its 6 iterations by grid search). For each step count the search:

1. scores the baselines on the clips: the recipe's default rule for N (lmnt's fast
   schedule at 6), the training schedule sub-sampled to N, and DDIM on the default
   rule; and the schedule the checkpoint already stores for N, if any (searched
   before, or inherited from a fine-tune's parent), so that a search run again goes on
   from where the last one ended; the best of them is the starting point;
2. moves the last sampling step of the best so far alone: betas[0] (the least noisy step,
   whose noise the output keeps) times each of LAST_STEP_FACTORS, the rest unchanged (a
   network fine-tuned on one schedule is best near it, and this one beta sets the
   residual noise: on the shipped vocoder 1e-4 -> 2e-5 took the held-out log-mel distance
   from 0.218 to 0.208 at 4 steps);
3. scores a grid of geometric (log-linear) beta schedules, parametrised by their two
   ends, with ancestral DDPM steps (WaveGrad-style grid);
4. tries the best so far with DDIM steps at a few noise scales (eta);
5. refines around the best by random perturbation of each log-beta (and eta), with a
   step size that shrinks when nothing improves, until the step count's share of the
   time budget is spent.

Every candidate is scored with the same noise (one seed), so differences between
candidates are the schedule's, not the noise's. Scores are means over the clips.

Metrics are `audiodiff eval`'s paired metrics, by the same keys and with the same
direction (`evaluation.metrics.PAIR_METRICS`: pesq_wb, log_mel, mr_stft, mcd_db, stoi,
f0_rmse_cents, vuv_error); the short names of earlier versions (pesq, logmel, mrstft)
are still accepted (`resolve_metric`).

Guard metrics (`--guard log_mel`): fewer steps should not buy one metric at the cost of
another. With guards, every candidate is also scored by them, and one that is at least
as good as the recipe's fast schedule (lmnt's 6 steps, DDPM) on every guard beats one
that is not; among candidates alike in that, the metric decides. (At 4 steps the
schedule the best PESQ comes from, a last step at beta 1e-4, leaves more noise in the
mel than a smaller one: the trade a guard makes explicit.)
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from audiodiff.atomic import check_writable
from audiodiff.audio import load_audio
from audiodiff.checkpoint import Checkpoint, load_checkpoint, save_searched_copy
from audiodiff.diffusion import Schedule, geometric_betas, inference_schedule, subsampled, training_schedule
from audiodiff.errors import AudiodiffError
from audiodiff.evaluation.evaluate import collect_audio, parse_steps
from audiodiff.evaluation.metrics import PAIR_METRICS, Metric, PairScorer, finite_mean
from audiodiff.inference import Vocoder
from audiodiff.searched_schedule import LEGACY_METRIC_NAMES, GuardScore, SearchedSchedule

#: What a search ranks by (`--metric`) and guards with (`--guard`): eval's paired metrics, by key.
METRICS: dict[str, Metric] = {m.key: m for m in PAIR_METRICS}
DEFAULT_METRIC = "pesq_wb"
GRID_FIRST = (1e-5, 1e-4, 1e-3)   # beta at the least noisy step: its noise is what the output keeps
GRID_LAST = (0.1, 0.2, 0.35, 0.5, 0.7)  # beta at the noisiest step
DDIM_ETAS = (0.0, 0.5, 1.0)
LAST_STEP_FACTORS = (0.2, 0.3, 0.5, 2.0)  # betas[0] of the best so far times these
BETA_MIN, BETA_MAX = 1e-6, 0.95
INITIAL_SPREAD = 0.3  # std of the log10-beta perturbation when refining
SHRINK_AFTER = 4      # failed perturbations in a row before the spread shrinks

Progress = Callable[[float, str], None]  # (fraction of the budget spent, status line)


@dataclass(frozen=True)
class Candidate:
    """A schedule and a sampler to score: betas [steps], 'ddpm' or 'ddim' with eta."""
    betas: tuple[float, ...]
    sampler: str = "ddpm"
    eta: float = 0.0

    @classmethod
    def of(cls, schedule: Schedule, sampler: str = "ddpm", eta: float = 0.0) -> Candidate:
        return cls(tuple(float(b) for b in schedule.betas), sampler, eta)

    @classmethod
    def geometric(cls, first: float, last: float, steps: int) -> Candidate:
        """DDPM on `steps` betas spaced evenly in log from `first` to `last` (diffusion.geometric_betas)."""
        return cls(tuple(float(b) for b in geometric_betas(first, last, steps)))


Scores = dict[str, float]  # metric name -> mean over the clips


@dataclass
class StepResult:
    """What the search found for one step count, with the baselines' scores (by the
    metric); `guard_met`: whether the found schedule's guard scores (stored with it) are
    all at least as good as the fast schedule's (True without guards)."""
    steps: int
    best: SearchedSchedule
    baselines: dict[str, float] = field(default_factory=dict)
    evaluations: int = 0

    @property
    def guard_met(self) -> bool:
        return all(g.met for g in self.best.guard)


def resolve_metric(name: str, option: str = "--metric") -> str:
    """The key of the metric `name` means: a key of METRICS, or a legacy short name
    (pesq, logmel, mrstft: LEGACY_METRIC_NAMES) renamed. A one-line error naming
    `option` for anything else."""
    key = LEGACY_METRIC_NAMES.get(name, name)
    if key not in METRICS:
        raise AudiodiffError(f"{option} {name!r}: choose one of {', '.join(METRICS)}")
    return key


def _better(metric: str, a: float, b: float) -> bool:
    """Is score a of `metric` strictly better than b (NaN is never better)?"""
    if not math.isfinite(a):
        return False
    if not math.isfinite(b):
        return True
    return a > b if METRICS[metric].better == "higher" else a < b


class ClipScorer:
    """Vocodes the clips' mels with a candidate and scores the result against the clips.

    clips: waveforms [samples] at the vocoder's rate; their mels are computed once.
    `metric` and `guard`: keys of METRICS (legacy short names are renamed).
    `gain_adjust` as in `Vocoder.vocode` (None: the checkpoint's setting); never
    refinement: the search ranks schedules, and refinement would blur their differences.
    `guard`: metrics a candidate must not lose on against the recipe's fast schedule
    (its `fast_betas`, lmnt's 6 steps in the shipped recipes; see the module's
    docstring); their bounds are scored once, on first use. Each candidate is vocoded
    once: a repeat (the fast schedule as the 6-step baseline, a grid point equal to the
    default rule) takes its stored scores.
    """

    def __init__(self, vocoder: Vocoder, clips: Sequence[torch.Tensor], metric: str, seed: int = 0,
                 gain_adjust: bool | None = None, guard: Sequence[str] = ()):
        metric = resolve_metric(metric, "--metric")
        guard = [resolve_metric(name, "--guard") for name in guard]
        self.vocoder, self.metric, self.seed = vocoder, metric, seed
        self.guard = tuple(g for g in dict.fromkeys(guard) if g != metric)
        self.gain_adjust = vocoder.plan(gain_adjust=gain_adjust).gain_adjust  # resolved: recorded with the result
        self.higher_is_better = METRICS[metric].better == "higher"
        self.clips = [torch.as_tensor(c, dtype=torch.float32).reshape(-1) for c in clips]
        self.mels = [vocoder.mel(c).cpu() for c in self.clips]
        self.pairs = [PairScorer(c, vocoder.sample_rate, vocoder.recipe.audio, keys=(metric, *self.guard))
                      for c in self.clips]  # each clip's side of the metrics, computed once
        self._bounds: Scores | None = None
        self._scored: dict[Candidate, Scores] = {}

    def score(self, candidate: Candidate) -> float:
        """Mean score by the metric over the clips (NaN clips, e.g. no speech for PESQ, are left out)."""
        return self.score_all(candidate)[self.metric]

    def score_all(self, candidate: Candidate) -> Scores:
        """Mean scores by the metric and each guard, from one vocoding of each clip (the
        stored ones if this candidate was scored before)."""
        if candidate in self._scored:
            return self._scored[candidate]
        names = (self.metric, *self.guard)
        values: dict[str, list[float]] = {name: [] for name in names}
        plan = self.vocoder.plan(schedule=Schedule.from_betas(candidate.betas), sampler=candidate.sampler,
                                 eta=candidate.eta, gain_adjust=self.gain_adjust, refine=0)
        for clip, mel, pair in zip(self.clips, self.mels, self.pairs):
            scores = pair.score(self.vocoder.vocode(mel, plan, seed=self.seed)[:clip.shape[-1]])
            for name in names:
                values[name].append(scores[name])
        self._scored[candidate] = {name: finite_mean(v) for name, v in values.items()}
        return self._scored[candidate]

    def better(self, a: float, b: float) -> bool:
        """Is score a (by the metric) strictly better than b (NaN is never better)?"""
        return _better(self.metric, a, b)

    def bounds(self) -> Scores:
        """The recipe's fast schedule's scores by the guards (empty without guards); a
        one-line error if one is not finite (e.g. PESQ on clips with no speech)."""
        if self._bounds is None:
            fast = baseline_candidates(self.vocoder, self.vocoder.recipe.diffusion.fast_steps)["default"]
            self._bounds = self.score_all(fast) if self.guard else {}
            for name in self.guard:
                if not math.isfinite(self._bounds[name]):
                    raise AudiodiffError(f"--guard {name}: the fast schedule's score on these clips is "
                                         f"{self._bounds[name]}, no bound to hold; choose other clips or guards")
        return {name: self._bounds[name] for name in self.guard}

    def holds(self, name: str, scores: Scores) -> bool:
        """Is the guard `name`'s score at least as good as the fast schedule's?"""
        return not _better(name, self.bounds()[name], scores[name])

    def meets_guard(self, scores: Scores) -> bool:
        """Is every guard score at least as good as the fast schedule's?"""
        return all(self.holds(name, scores) for name in self.guard)

    def preferred(self, a: Scores, b: Scores) -> bool:
        """Is a strictly preferred to b: it meets the guard and b does not, or both alike
        in that and a better by the metric?"""
        meets_a, meets_b = self.meets_guard(a), self.meets_guard(b)
        if meets_a != meets_b:
            return meets_a
        return self.better(a[self.metric], b[self.metric])


def baseline_candidates(vocoder: Vocoder, steps: int) -> dict[str, Candidate]:
    """The schedules a search must beat, named for the results table."""
    config = vocoder.recipe.diffusion
    rule = inference_schedule(config, steps)  # at diffusion.fast_steps: the recipe's fast_betas
    return {"default": Candidate.of(rule),
            "train-subsampled": Candidate.of(subsampled(training_schedule(config), steps)),
            "ddim": Candidate.of(rule, "ddim", 0.0)}


def grid_candidates(steps: int) -> list[Candidate]:
    """WaveGrad-style grid over the two ends of geometric beta schedules, DDPM steps."""
    firsts = GRID_FIRST if steps > 1 else GRID_FIRST[:1]
    return [Candidate.geometric(f, l, steps) for f in firsts for l in GRID_LAST]


def last_step_candidates(candidate: Candidate) -> list[Candidate]:
    """`candidate` with betas[0] alone times each of LAST_STEP_FACTORS (clipped to
    BETA_MIN and below betas[1], so the noise levels stay strictly decreasing)."""
    betas, out = candidate.betas, []
    for factor in LAST_STEP_FACTORS:
        first = max(BETA_MIN, betas[0] * factor)
        if len(betas) > 1:
            first = min(first, betas[1] * 0.99)
        out.append(Candidate((first, *betas[1:]), candidate.sampler, candidate.eta))
    return out


def perturb(candidate: Candidate, spread: float, rng: np.random.Generator) -> Candidate:
    """A neighbour: each log10-beta moved by N(0, spread), clipped to (BETA_MIN, BETA_MAX),
    and for DDIM eta moved by N(0, spread) within [0, 1]."""
    logs = np.log10(np.asarray(candidate.betas)) + rng.normal(0.0, spread, len(candidate.betas))
    betas = tuple(float(b) for b in np.clip(10.0 ** logs, BETA_MIN, BETA_MAX))
    eta = candidate.eta
    if candidate.sampler == "ddim":
        eta = float(np.clip(eta + rng.normal(0.0, spread), 0.0, 1.0))
    return Candidate(betas, candidate.sampler, eta)


class _StepSearch:
    """The state of one step count's search: the best candidate so far and its scores,
    the candidates tried, the slowest one's time (to judge whether another fits)."""

    def __init__(self, scorer: ClipScorer, steps: int, budget_s: float, on_progress: Progress | None):
        self.scorer, self.steps, self.budget_s, self.on_progress = scorer, steps, budget_s, on_progress
        self.start = time.perf_counter()
        self.evaluations, self.slowest = 0, 0.0
        self.best: Candidate | None = None
        self.best_scores: Scores = {}

    def spent(self) -> float:
        return time.perf_counter() - self.start

    def room(self) -> bool:
        """Can one more candidate finish within the budget, judging by the slowest so far?"""
        return self.spent() + self.slowest <= self.budget_s

    def consider(self, candidate: Candidate) -> float:
        """Score `candidate`, keep it if preferred to the best so far; its score by the metric."""
        scorer = self.scorer
        t0 = time.perf_counter()
        scores = scorer.score_all(candidate)
        self.slowest = max(self.slowest, time.perf_counter() - t0)
        self.evaluations += 1
        if self.best is None or scorer.preferred(scores, self.best_scores):
            self.best, self.best_scores = candidate, scores
        if self.on_progress is not None:
            guarded = ("" if not scorer.guard else " (guard met)" if scorer.meets_guard(self.best_scores)
                       else " (guard not met)")
            self.on_progress(min(1.0, self.spent() / self.budget_s) if self.budget_s > 0 else 1.0,
                             f"{self.steps} steps: best {scorer.metric} {self.best_scores[scorer.metric]:.3f}"
                             f"{guarded} ({self.evaluations} tried)")
        return scores[scorer.metric]

    def consider_while_room(self, candidates: Sequence[Candidate]) -> None:
        for candidate in candidates:
            if not self.room():
                break
            self.consider(candidate)

    def refine(self, rng: np.random.Generator) -> None:
        """Perturb the best until the budget is spent, the spread shrinking after failures."""
        spread, failures = INITIAL_SPREAD, 0
        while self.room():
            before = self.best
            self.consider(perturb(self.best, spread, rng))
            if self.best is not before:
                failures = 0
            else:
                failures += 1
                if failures >= SHRINK_AFTER:
                    spread, failures = spread * 0.7, 0

    def found(self) -> SearchedSchedule:
        """The best candidate as the record a checkpoint stores, with its guard scores."""
        scorer, best, scores = self.scorer, self.best, self.best_scores
        bounds = scorer.bounds()
        guard = tuple(GuardScore(g, scores[g], bounds[g], scorer.holds(g, scores)) for g in scorer.guard)
        return SearchedSchedule(betas=best.betas, sampler=best.sampler, eta=best.eta, metric=scorer.metric,
                                score=scores[scorer.metric], clips=len(scorer.clips),
                                gain_adjust=scorer.gain_adjust, guard=guard)


def search_steps(scorer: ClipScorer, steps: int, budget_s: float, seed: int = 0,
                 on_progress: Progress | None = None) -> StepResult:
    """Search schedules of `steps` betas for at most about `budget_s` seconds.

    The baselines are always scored (so there is a result even when the budget is
    too small for anything else); each later candidate starts only if it can finish
    in the time left, judging by the slowest candidate so far.
    """
    scorer.bounds()  # the guards' bounds, if any: scored once per scorer (search() counts it in the budget)
    state = _StepSearch(scorer, steps, budget_s, on_progress)
    baselines = {name: state.consider(c) for name, c in baseline_candidates(scorer.vocoder, steps).items()}
    stored = scorer.vocoder.defaults.schedules.get(steps)  # inherited from a fine-tune's parent, or searched before
    if stored is not None:
        state.consider(Candidate(tuple(stored.betas), stored.sampler, stored.eta))
    state.consider_while_room(last_step_candidates(state.best) + grid_candidates(steps))
    state.consider_while_room([Candidate(state.best.betas, "ddim", eta) for eta in DDIM_ETAS])
    state.refine(np.random.default_rng([seed, steps]))
    return StepResult(steps, state.found(), baselines, state.evaluations)


def search(scorer: ClipScorer, step_counts: Sequence[int], budget_s: float, seed: int = 0,
           on_progress: Progress | None = None) -> list[StepResult]:
    """Search each step count in turn; the time left is shared in proportion to the step
    counts still to search, since a candidate's cost is (about) proportional to its steps."""
    counts = sorted(set(int(n) for n in step_counts))
    if not counts or counts[0] < 1:
        raise AudiodiffError("--steps must list positive step counts, e.g. 2,3,4,6")
    start = time.perf_counter()
    scorer.bounds()  # one vocoding with the fast schedule when there are guards
    results = []
    for i, n in enumerate(counts):
        done = time.perf_counter() - start
        share = max(0.0, budget_s - done) * n / sum(counts[i:])

        def report(fraction: float, line: str, done=done, share=share) -> None:
            if on_progress is not None:
                on_progress(min(1.0, (done + fraction * share) / budget_s) if budget_s > 0 else 1.0, line)

        results.append(search_steps(scorer, n, share, seed=seed, on_progress=report))
    return results


@dataclass
class SearchJob:
    """A schedule search with every input checked and loaded (`prepare_search`), ready
    to `run`: the scorer (the vocoder and the clips), the step counts, the budget and
    the checkpoint to write."""
    checkpoint: Checkpoint
    source: Path
    target: Path
    files: list[Path]
    counts: list[int]
    budget_s: float
    scorer: ClipScorer
    seed: int = 0
    default_steps: int | None = None

    @property
    def vocoder(self) -> Vocoder:
        return self.scorer.vocoder

    @property
    def mode(self) -> str:
        return "with mel gain adjustment" if self.scorer.gain_adjust else "raw (no gain adjustment)"

    def describe(self) -> str:
        """'Searching 2,3 steps on 5 clip(s) by PESQ-WB (pesq_wb), guard log_mel (...), ... budget 10 min'."""
        metric = METRICS[self.scorer.metric]
        guarded = (f", guard {', '.join(self.scorer.guard)} (no worse than the fast schedule)"
                   if self.scorer.guard else "")
        return (f"Searching {','.join(map(str, self.counts))} steps on {len(self.files)} clip(s) by "
                f"{metric.label} ({metric.key}){guarded}, {self.mode}, budget {self.budget_s / 60:g} min")

    def run(self, on_progress: Progress | None = None) -> list[StepResult]:
        """Search every step count, then write the checkpoint with the schedules found
        (atomically; the step counts not searched again are kept)."""
        results = search(self.scorer, self.counts, self.budget_s, seed=self.seed, on_progress=on_progress)
        save_searched_copy(self.checkpoint, self.target, {r.steps: r.best for r in results}, self.default_steps)
        return results


@dataclass(frozen=True)
class SearchRequest:
    """What `audiodiff schedule search` is asked: the vocoder `checkpoint`, the held-out
    `clips` (files or folders), the step counts, the `metric` to rank by and the `guard`
    metrics, the time budget, where to write (`output`: default CKPT-STEM.searched.pt
    beside it; the input itself only with `overwrite`), a `default_steps` to store, and
    how to vocode (`device`, `seed`, `gain_adjust`: None is the checkpoint's setting)."""
    checkpoint: str | Path
    clips: Sequence[str | Path]
    steps: str | Sequence[int] = "2,3,4,6"
    metric: str = DEFAULT_METRIC
    guard: Sequence[str] = ()
    budget_minutes: float = 10.0
    output: str | Path | None = None
    overwrite: bool = False
    default_steps: int | None = None
    device: str = "auto"
    seed: int = 0
    gain_adjust: bool | None = None

    @property
    def target(self) -> Path:
        checkpoint = Path(self.checkpoint)
        return Path(self.output) if self.output is not None else checkpoint.with_name(f"{checkpoint.stem}.searched.pt")


def prepare_search(request: SearchRequest) -> SearchJob:
    """Check every input of `audiodiff schedule search` before any work, then load the
    vocoder and the clips. One-line errors for: an unknown metric or guard, an output
    that is the input checkpoint (without `overwrite`) or cannot be written, bad step
    counts, a `default_steps` not searched, a missing clip or an empty folder, a bad
    checkpoint, unreadable audio."""
    r, checkpoint, target = request, Path(request.checkpoint), request.target
    metric = resolve_metric(r.metric, "--metric")
    guards = [resolve_metric(name, "--guard") for name in r.guard]
    if target.resolve() == checkpoint.resolve() and not r.overwrite:
        raise AudiodiffError(f"-o {target} is the input checkpoint; pass --overwrite to replace it")
    check_writable(target.parent)
    counts = parse_steps(r.steps)
    if r.default_steps is not None and r.default_steps not in counts:
        raise AudiodiffError(f"--default-steps {r.default_steps} is not one of the searched --steps "
                             f"{','.join(map(str, counts))}")
    if r.budget_minutes < 0:
        raise AudiodiffError(f"--budget-minutes {r.budget_minutes:g}: must be >= 0")
    files = collect_audio(r.clips)
    data = load_checkpoint(checkpoint)
    vocoder = Vocoder.from_checkpoint_data(data, str(checkpoint), r.device)
    audio = [load_audio(f, vocoder.sample_rate) for f in files]
    scorer = ClipScorer(vocoder, audio, metric, seed=r.seed, gain_adjust=r.gain_adjust, guard=guards)
    return SearchJob(data, checkpoint, target, files, counts, r.budget_minutes * 60, scorer, r.seed, r.default_steps)
