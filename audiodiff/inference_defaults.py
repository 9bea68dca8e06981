"""The inference defaults a model carries in its checkpoint, as one typed record.

A checkpoint says how the model is best run when the caller says nothing: how many
steps, whether to apply the mel gain adjustment at each step, how many refinement
iterations to run after sampling, and the few-step schedules `audiodiff schedule
search` found (each with the sampler and eta it scored best with). Inference resolves
these with the caller's overrides into one plan (see sampling_plan.py); a model
fine-tuned from another (`train --init`) starts from its parent's record, marked as
inherited, so `vocode` on it runs as on the parent until its own are set.

The record lives in the core so the checkpoint module can read and write it; which
keys it takes on disk is checkpoint.py's business.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from audiodiff.searched_schedule import SearchedSchedule


@dataclass(frozen=True)
class InferenceDefaults:
    """How to run a model when the caller does not say (None: not set, the recipe's rule).

    `steps`: network evaluations; `gain_adjust`: match each step's clean estimate to the
    mel (vocoders); `refine`: fast Griffin-Lim iterations after sampling (vocoders);
    `schedules`: {steps: SearchedSchedule}, the searched schedule (and its sampler) for
    that step count; `inherited_from`: the parent model this record came from in a
    fine-tune (None: set for this model, or never set). Setting `steps`, `gain_adjust`
    or `refine` later makes the record the model's own; each searched schedule says
    for itself whether it was inherited (a new search replaces it with its own).
    """
    steps: int | None = None
    gain_adjust: bool | None = None
    refine: int | None = None
    schedules: Mapping[int, SearchedSchedule] = field(default_factory=dict)
    inherited_from: str | None = None

    def __post_init__(self) -> None:
        # the messages name the settings as a checkpoint and the CLI (--default-steps) call them
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int)
                                       or self.steps < 1):
            raise ValueError(f"default_steps {self.steps!r} is not a positive integer")
        if self.refine is not None and (isinstance(self.refine, bool) or not isinstance(self.refine, int)
                                        or self.refine < 0):
            raise ValueError(f"default_refine {self.refine!r} is not a non-negative integer")
        if self.gain_adjust is not None and not isinstance(self.gain_adjust, bool):
            raise ValueError(f"default_gain_adjust {self.gain_adjust!r} is not true or false")
        for steps, found in self.schedules.items():
            if steps != len(found.betas):
                raise ValueError(f"searched schedule {steps!r}: holds {len(found.betas)} betas")
        object.__setattr__(self, "schedules", dict(sorted(self.schedules.items())))

    @property
    def empty(self) -> bool:
        """Nothing set: inference follows the recipe's rule (a fresh training checkpoint)."""
        return self.steps is None and self.gain_adjust is None and self.refine is None and not self.schedules

    def with_settings(self, steps: int | None = None, gain_adjust: bool | None = None,
                      refine: int | None = None) -> InferenceDefaults:
        """This record with the settings given (not None) replaced; setting any of them
        makes the record this model's own (no longer inherited)."""
        given = {k: v for k, v in (("steps", steps), ("gain_adjust", gain_adjust), ("refine", refine))
                 if v is not None}
        return dataclasses.replace(self, **given, inherited_from=None) if given else self

    def with_schedules(self, schedules: Mapping[int, SearchedSchedule]) -> InferenceDefaults:
        """This record with `schedules` merged in (a step count searched again is replaced)."""
        return dataclasses.replace(self, schedules={**self.schedules, **schedules})

    def inherited(self, parent: str) -> InferenceDefaults:
        """The record a model fine-tuned from `parent` starts with: the same settings and
        schedules, marked as inherited from `parent` (or from where the parent had them,
        when it inherited them itself): the schedules were searched on the parent's
        weights, a starting point until `schedule search` runs on the new ones."""
        if self.empty:
            return self
        schedules = {n: s if s.inherited_from else dataclasses.replace(s, inherited_from=parent)
                     for n, s in self.schedules.items()}
        return dataclasses.replace(self, schedules=schedules, inherited_from=self.inherited_from or parent)

    def describe(self) -> str:
        """Where the defaults come from, for the CLI's first line."""
        if self.inherited_from:
            return f"defaults inherited from {self.inherited_from}"
        if self.empty:
            return ("no inference defaults in the checkpoint: the recipe's rule (`audiodiff export` "
                    "or `audiodiff schedule search` stores them)")
        return "the checkpoint's own defaults"
