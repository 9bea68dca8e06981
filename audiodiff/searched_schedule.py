"""Sampling schedules found by `audiodiff schedule search`, as a checkpoint stores them.

The search itself is a tool (schedule_search.py); what it finds is part of the model:
the checkpoint carries these records and inference reads its schedule and sampler
from them, so they live in the core, beside the `Schedule` and the sampler registry
they are checked against.
"""
from __future__ import annotations

from dataclasses import dataclass

from audiodiff.diffusion import Schedule
from audiodiff.samplers import SAMPLERS

#: The short metric names of checkpoints searched before the names were unified with
#: `audiodiff eval`'s, and the key (`evaluation.metrics.PAIR_METRICS`) each now reads as.
#: The records below rename them when made, so older checkpoints load with the new names;
#: `schedule search --metric/--guard` still accepts them, with a deprecation note.
LEGACY_METRIC_NAMES = {"pesq": "pesq_wb", "logmel": "log_mel", "mrstft": "mr_stft"}


def current_metric_name(name: str) -> str:
    """A metric's key as `audiodiff eval` names it: a legacy name renamed, any other as given."""
    return LEGACY_METRIC_NAMES.get(name, name)


@dataclass(frozen=True)
class SearchedSchedule:
    """A sampling schedule found by `audiodiff schedule search`, as stored in a checkpoint.

    `betas` [steps] (step 0, least noise, first) with the sampler that scored best with
    them ('ddpm' ancestral, or 'ddim' with noise scale `eta`), the metric, its mean
    score on the search clips, how many clips that was, and whether the vocoder ran
    with mel gain adjustment while scoring (None: not recorded, as in checkpoints
    searched before it was), and the `--guard` metrics it was held to (empty: none, or
    searched before guards were recorded). Metric names are `audiodiff eval`'s keys
    (pesq_wb, log_mel, ...): the legacy pesq, logmel, mrstft of older checkpoints are
    renamed when the record is made (LEGACY_METRIC_NAMES). `inherited_from` names the model it was
    searched on when a fine-tune took it over from its parent (None: searched on this
    model's weights).
    """
    betas: tuple[float, ...]
    sampler: str = "ddpm"
    eta: float = 0.0
    metric: str = ""
    score: float = float("nan")
    clips: int = 0
    gain_adjust: bool | None = None
    guard: tuple[GuardScore, ...] = ()
    inherited_from: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "metric", current_metric_name(self.metric))
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler {self.sampler!r} is not one of {', '.join(SAMPLERS)}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta {self.eta} is not in [0, 1]")
        Schedule.from_betas(self.betas)  # validates: non-empty, each in (0, 1)

    @property
    def schedule(self) -> Schedule:
        return Schedule.from_betas(self.betas)

    def describe_score(self) -> str:
        """'pesq_wb 1.889 on 5 clips, with gain adjustment': what the score was measured on."""
        how = {True: ", with gain adjustment", False: ", raw", None: ""}[self.gain_adjust]
        guards = "".join(f", {g.describe()}" for g in self.guard)
        origin = f", inherited from {self.inherited_from}" if self.inherited_from else ""
        return f"{self.metric} {self.score:.3f} on {self.clips} clips{how}{guards}{origin}"

    def to_dict(self) -> dict:
        d = {"betas": [float(b) for b in self.betas], "sampler": self.sampler, "eta": float(self.eta),
             "metric": self.metric, "score": float(self.score), "clips": int(self.clips)}
        if self.gain_adjust is not None:
            d["gain_adjust"] = bool(self.gain_adjust)
        if self.guard:
            d["guard"] = {g.metric: g.to_dict() for g in self.guard}
        if self.inherited_from is not None:
            d["inherited_from"] = self.inherited_from
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SearchedSchedule:
        """Rebuild from `to_dict()`; ValueError (saying what is wrong) for anything else."""
        if not isinstance(d, dict) or not isinstance(d.get("betas"), (list, tuple)):
            raise ValueError("a searched schedule must be a table with a list of betas")
        unknown = set(d) - {"betas", "sampler", "eta", "metric", "score", "clips", "gain_adjust", "guard",
                            "inherited_from"}
        if unknown:
            raise ValueError(f"unknown keys {', '.join(sorted(unknown))}")
        guard = d.get("guard", {})
        if not isinstance(guard, dict):
            raise ValueError("guard must be a table of metric -> {score, bound, met}")
        origin = d.get("inherited_from")
        if origin is not None and not isinstance(origin, str):
            raise ValueError(f"inherited_from must be a model's name, got {origin!r}")
        try:
            return cls(betas=tuple(float(b) for b in d["betas"]), sampler=str(d.get("sampler", "ddpm")),
                       eta=float(d.get("eta", 0.0)), metric=str(d.get("metric", "")),
                       score=float(d.get("score", float("nan"))), clips=int(d.get("clips", 0)),
                       gain_adjust=_optional_bool(d.get("gain_adjust"), "gain_adjust"),
                       guard=tuple(GuardScore.from_dict(str(k), v) for k, v in guard.items()),
                       inherited_from=origin)
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class GuardScore:
    """A searched schedule's mean score by one `--guard` metric on the search clips, the
    bound it was held to (the recipe's fast schedule's score on the same clips), and
    whether it met it (no worse than the bound). A legacy metric name is renamed."""
    metric: str
    score: float
    bound: float
    met: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "metric", current_metric_name(self.metric))

    def describe(self) -> str:
        """'guard log_mel 0.2105 (fast schedule 0.2175, met)'."""
        return f"guard {self.metric} {self.score:.4f} (fast schedule {self.bound:.4f}, {'met' if self.met else 'not met'})"

    def to_dict(self) -> dict:
        return {"score": float(self.score), "bound": float(self.bound), "met": bool(self.met)}

    @classmethod
    def from_dict(cls, metric: str, d: dict) -> GuardScore:
        """Rebuild from `to_dict()`; ValueError naming the guard for anything else."""
        if not isinstance(d, dict) or set(d) != {"score", "bound", "met"} or not isinstance(d["met"], bool):
            raise ValueError(f"guard {metric}: must be a table of score, bound and met (true/false)")
        return cls(metric, float(d["score"]), float(d["bound"]), d["met"])


def _optional_bool(value, key: str) -> bool | None:
    """None or a bool, as stored; ValueError naming `key` for anything else."""
    if value is None or isinstance(value, bool):
        return value
    raise ValueError(f"{key} must be true or false, got {value!r}")
