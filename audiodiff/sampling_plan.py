"""How one inference call samples: a `SamplingPlan`, resolved once by `resolve_plan`.

A caller may name any of steps, sampler, eta, an explicit schedule, gain adjustment
and refinement (`Overrides`); the checkpoint carries its defaults and searched
schedules (`InferenceDefaults`); the recipe has a rule for the rest. `resolve_plan`
combines them in one order, the same for every setting:

    explicit argument > searched schedule for that step count > checkpoint default > recipe rule

Each level supplies what it has: a searched schedule gives betas, sampler and eta for
its step count; the checkpoint's defaults give the step count, gain adjustment and
refinement; the recipe's rule gives everything (its fast schedule's length, or a
generator's training length; its default betas for that count; ddpm; no gain
adjustment; no refinement). The result is a plan that `Vocoder.vocode` and
`Generator.generate` run as it is, and that the CLI prints on its first line.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from audiodiff.diffusion import Schedule, inference_schedule, training_schedule
from audiodiff.errors import AudiodiffError
from audiodiff.inference_defaults import InferenceDefaults
from audiodiff.recipe import Recipe
from audiodiff.samplers import SAMPLERS
from audiodiff.searched_schedule import SearchedSchedule

#: The recipe's rule for the sampler when neither the caller nor a searched schedule names one.
RULE_SAMPLER = "ddpm"


@dataclass(frozen=True)
class Overrides:
    """What a caller asks for; None leaves the setting to the checkpoint and the recipe.

    `schedule` (explicit betas) fixes the step count and replaces any searched
    schedule; pass `sampler` and `eta` with it. `gain_adjust` and `refine` apply to
    vocoders only.
    """
    steps: int | None = None
    sampler: str | None = None
    eta: float | None = None
    schedule: Schedule | None = None
    gain_adjust: bool | None = None
    refine: int | None = None


@dataclass(frozen=True, eq=False)
class SamplingPlan:
    """Everything one sampling run needs beyond the model and the noise.

    `schedule` (len == `steps`) with `sampler` ('ddpm' or 'ddim', with noise scale
    `eta`); `gain_adjust` and `refine` as in consistency.py (vocoders); `searched`:
    the searched schedule the betas and sampler came from (None: the recipe's rule or
    an explicit schedule), kept to describe the plan.
    """
    steps: int
    schedule: Schedule
    sampler: str = RULE_SAMPLER
    eta: float = 0.0
    gain_adjust: bool = False
    refine: int = 0
    searched: SearchedSchedule | None = None

    def __eq__(self, other: object) -> bool:
        """Plans are equal when they sample alike: same betas, sampler, eta and mel
        consistency (where the betas came from is not compared)."""
        if not isinstance(other, SamplingPlan):
            return NotImplemented
        return ((self.steps, self.sampler, self.eta, self.gain_adjust, self.refine)
                == (other.steps, other.sampler, other.eta, other.gain_adjust, other.refine)
                and torch.equal(self.schedule.betas, other.schedule.betas))

    __hash__ = None  # type: ignore[assignment] - holds a tensor

    def describe(self) -> str:
        """'4 steps, searched schedule (pesq 2.522 on 5 clips, ...), ddim eta 1, mel gain adjustment'."""
        how = f"searched schedule ({self.searched.describe_score()})" if self.searched else "default schedule"
        parts = [f"{self.steps} steps", how, self.sampler + (f" eta {self.eta:g}" if self.sampler == "ddim" else "")]
        parts += ["mel gain adjustment"] if self.gain_adjust else []
        parts += [f"{self.refine} refinement iterations"] if self.refine else []
        return ", ".join(parts)


def rule_steps(recipe: Recipe) -> int:
    """The recipe's rule for the step count: a vocoder's fast schedule length
    (`diffusion.fast_steps`), a generator's training schedule length."""
    if recipe.model.conditional:
        return recipe.diffusion.fast_steps
    return len(training_schedule(recipe.diffusion))


def resolve_plan(request: Overrides, defaults: InferenceDefaults, recipe: Recipe) -> SamplingPlan:
    """The one place inference settings are decided. For each setting the first of these
    that has a value wins: the caller's explicit argument (`request`), the checkpoint's
    searched schedule for the chosen step count, the checkpoint's default, the recipe's
    rule. AudiodiffError (one line) for a value no model takes."""
    _check(request, recipe)
    # steps: explicit (an explicit schedule fixes its own) > checkpoint default > recipe rule
    if request.schedule is not None:
        steps = len(request.schedule)
    elif request.steps is not None:
        steps = request.steps
    elif defaults.steps is not None:
        steps = defaults.steps
    else:
        steps = rule_steps(recipe)
    # schedule: explicit > searched for that step count > recipe rule
    searched = None if request.schedule is not None else defaults.schedules.get(steps)
    if request.schedule is not None:
        schedule = request.schedule
    elif searched is not None:
        schedule = searched.schedule
    else:
        schedule = inference_schedule(recipe.diffusion, steps)
    # sampler: explicit > searched > recipe rule; eta: explicit > searched (for its own sampler) > 0
    sampler = request.sampler or (searched.sampler if searched else RULE_SAMPLER)
    if request.eta is not None:
        eta = float(request.eta)
    else:
        eta = searched.eta if searched is not None and searched.sampler == sampler else 0.0
    # mel consistency (vocoders): explicit > checkpoint default > off
    conditional = recipe.model.conditional
    gain_adjust = _first(request.gain_adjust, defaults.gain_adjust if conditional else None, False)
    refine = _first(request.refine, defaults.refine if conditional else None, 0)
    return SamplingPlan(steps=steps, schedule=schedule, sampler=sampler, eta=eta, gain_adjust=bool(gain_adjust),
                        refine=int(refine), searched=searched)


def _first(*values):
    """The first value that is not None."""
    return next(v for v in values if v is not None)


def _check(request: Overrides, recipe: Recipe) -> None:
    """One-line errors for requests no model takes (or this kind of model does not)."""
    if request.steps is not None:
        if request.schedule is not None and request.steps != len(request.schedule):
            raise AudiodiffError(f"steps {request.steps} does not match the given schedule's "
                                 f"{len(request.schedule)} betas")
        if isinstance(request.steps, bool) or not isinstance(request.steps, int) or request.steps < 1:
            raise AudiodiffError(f"steps {request.steps!r}: must be an integer >= 1")
    if request.sampler is not None and request.sampler not in SAMPLERS:
        raise AudiodiffError(f"unknown sampler {request.sampler!r} (known: {', '.join(SAMPLERS)})")
    if request.eta is not None and not 0.0 <= request.eta <= 1.0:
        raise AudiodiffError(f"eta {request.eta}: must be in [0, 1]")
    if request.refine is not None and request.refine < 0:
        raise AudiodiffError(f"refine {request.refine}: must be >= 0")
    if not recipe.model.conditional and (request.gain_adjust or request.refine):
        raise AudiodiffError("gain adjustment and refinement apply to vocoders; this model is unconditional")
