"""How a model is named and described to its user: the CLI's "Model:" line and `info --json`.

Every command that loads a model prints `model_line(...)` first (on stderr), so a user
sees at once which weights run, how (device, precision, the resolved sampling plan) and
where the inference settings came from. `model_summary` is the same information, and
the model card of a shipped default, as a plain dict (`audiodiff info --json`); each
inference setting says where its value comes from, in the order `resolve_plan` uses.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from audiodiff.checkpoint import Checkpoint
from audiodiff.inference_defaults import InferenceDefaults
from audiodiff.pretrained import ModelCard, describe_checkpoint
from audiodiff.recipe import Recipe
from audiodiff.sampling_plan import Overrides, SamplingPlan, resolve_plan

RULE = "recipe rule"            # no value in the checkpoint: the recipe's rule decides
CHECKPOINT = "checkpoint"       # set for this model (export, schedule search)
SEARCHED = "searched schedule"  # from the searched schedule for the step count


def model_kind(recipe: Recipe) -> str:
    """'vocoder' (mel-conditioned) or 'generator' (unconditional)."""
    return "vocoder" if recipe.model.conditional else "generator"


@dataclass(frozen=True)
class ModelView:
    """How a command runs a model, as its "Model:" line says: the device and precision,
    the one plan it samples with (if one), and a `name` in place of the path (a model
    with random weights). None: left out of the line."""
    device: str | torch.device | None = None
    precision: str | None = None
    plan: SamplingPlan | None = None
    name: str | None = None


def model_line(source: str | Path, recipe: Recipe, step: int, defaults: InferenceDefaults | None = None,
               view: ModelView = ModelView()) -> str:
    """The one line that names a model before a command uses it:

    'Model: NAME (vocoder, step 10, 22050 Hz, preset hifigan, cpu fp32; PLAN; DEFAULTS)'

    NAME is the shipped default's card name for a shipped model, else `view.name` or the
    path; PLAN is `view.plan.describe()` when the command samples with one plan; DEFAULTS
    says where the inference defaults come from (`defaults` None: left out, as for a
    model with random weights)."""
    kind = model_kind(recipe)
    label = view.name or describe_checkpoint(Path(source), kind)
    what = f"{kind}, step {step}, {recipe.audio.sample_rate} Hz"
    if recipe.model.conditional:
        what += f", preset {recipe.audio.preset}"
    if view.device is not None:
        what += f", {view.device}" + (f" {view.precision}" if view.precision else "")
    parts = [what] + ([view.plan.describe()] if view.plan is not None else []) + \
        ([defaults.describe()] if defaults is not None else [])
    return f"Model: {label} ({'; '.join(parts)})"


def inherited_schedule_note(plan: SamplingPlan) -> str | None:
    """The note a command prints when `plan` samples with a schedule searched on another
    model's weights (a fine-tune's inheritance from its parent), else None. Such a
    schedule is a starting point, not a fit: after more training it can score below even
    the recipe's rule, so the note names the command that fits one to these weights."""
    found = plan.searched
    if found is None or not found.inherited_from:
        return None
    return (f"the {plan.steps}-step schedule was searched on {found.inherited_from}, not on these weights; "
            f"after further training it can score below the recipe's rule: `audiodiff schedule search` "
            f"fits one to this checkpoint")


def _origin(is_set: bool, defaults: InferenceDefaults) -> str:
    if not is_set:
        return RULE
    return f"inherited from {defaults.inherited_from}" if defaults.inherited_from else CHECKPOINT


def model_summary(path: str | Path, checkpoint: Checkpoint, card: ModelCard | None = None) -> dict[str, Any]:
    """A checkpoint as plain JSON-ready values: what it is, its model card (shipped
    defaults), its recipe, step and size, and the inference settings it runs with when
    the caller sets none, each with where it comes from ('checkpoint', 'inherited from
    PARENT', 'searched schedule', or 'recipe rule'). A score not recorded (NaN) is None."""
    recipe, defaults = checkpoint.recipe, checkpoint.defaults
    plan = resolve_plan(Overrides(), defaults, recipe)
    searched = plan.searched
    from_search = SEARCHED + (f", inherited from {searched.inherited_from}"
                              if searched is not None and searched.inherited_from else "")
    schedule_origin = from_search if searched is not None else RULE
    inference: dict[str, Any] = {
        "steps": {"value": plan.steps, "from": _origin(defaults.steps is not None, defaults)},
        "sampler": {"value": plan.sampler, "from": schedule_origin},
        "eta": {"value": plan.eta, "from": schedule_origin},
        "betas": {"value": [float(b) for b in plan.schedule.betas], "from": schedule_origin},
    }
    if recipe.model.conditional:
        inference["gain_adjust"] = {"value": plan.gain_adjust, "from": _origin(defaults.gain_adjust is not None,
                                                                                defaults)}
        inference["refine"] = {"value": plan.refine, "from": _origin(defaults.refine is not None, defaults)}
    inference["inherited_from"] = defaults.inherited_from
    inference["describe"] = defaults.describe()
    inference["schedules"] = {str(n): s.to_dict() for n, s in defaults.schedules.items()}
    return _finite({
        "checkpoint": str(path),
        "name": card.name if card else None,
        "kind": model_kind(recipe),
        "step": int(checkpoint.step),
        "inference_only": checkpoint.inference_only,
        "parameters": int(sum(t.numel() for t in checkpoint.ema.values())),
        "sample_rate": recipe.audio.sample_rate,
        "card": dataclasses.asdict(card) if card else None,
        "recipe": recipe.to_dict(),
        "inference": inference,
    })


def _finite(value: Any) -> Any:
    """`value` with every non-finite float (a score never measured) as None: valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
