"""The checkpoint format: one definition, saved atomically, loaded safely.

A checkpoint is a dict of plain types and tensors:

    format    "audiodiff-checkpoint"
    version   FORMAT_VERSION
    step      training steps done
    recipe    Recipe.to_dict(): everything needed to rebuild the model and mel
    model     network state dict (raw weights)
    ema       network state dict (EMA weights: what inference uses)
    optimizer optimizer state dict, or None in an inference-only file
    extra     dict of plain values (e.g. generator state, run info)
    schedules optional: {"N": SearchedSchedule.to_dict()} from `audiodiff schedule search`
    default_steps optional: the step count `vocode` uses when none is asked for
    default_refine optional: the mel-consistency refinement iterations `vocode` runs after
              sampling when none are asked for (see consistency.py; 0 when absent)
    default_gain_adjust optional: whether `vocode` applies the mel gain adjustment at each
              step when not told (off when absent)

It is written to a temp file in the same folder, flushed, and renamed, so a killed
process leaves either the old file or the new one. It is read with
`torch.load(weights_only=True)`: no pickled code runs. Anything else gives a
CheckpointError whose one line names the file.
"""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from audiodiff.atomic import atomic_path
from audiodiff.errors import CheckpointError, RecipeError
from audiodiff.recipe import Recipe
from audiodiff.searched_schedule import SearchedSchedule

FORMAT = "audiodiff-checkpoint"
FORMAT_VERSION = 1
REQUIRED = ("format", "version", "step", "recipe", "model", "ema")


def save_checkpoint(path: str | Path, *, recipe: Recipe, model: dict, ema: dict, step: int,
                    optimizer: dict | None = None, extra: dict[str, Any] | None = None,
                    schedules: dict[int, SearchedSchedule] | None = None,
                    default_steps: int | None = None, default_refine: int | None = None,
                    default_gain_adjust: bool | None = None) -> Path:
    """Write a checkpoint atomically; returns its path."""
    path = Path(path)
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "step": int(step),
               "recipe": recipe.to_dict(), "model": model, "ema": ema,
               "optimizer": optimizer, "extra": dict(extra or {})}
    if schedules:
        payload["schedules"] = {str(n): s.to_dict() for n, s in sorted(schedules.items())}
    if default_steps is not None:
        payload["default_steps"] = int(default_steps)
    if default_refine is not None:
        payload["default_refine"] = int(default_refine)
    if default_gain_adjust is not None:
        payload["default_gain_adjust"] = bool(default_gain_adjust)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint (tensors on CPU). Adds key `recipe_obj`: the Recipe."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before refusing them
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: not an audiodiff checkpoint (it holds pickled objects "
                              f"that are not loaded for safety)") from None
    except Exception as exc:  # noqa: BLE001 - a damaged file can make the unpickler raise anything
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: cannot read checkpoint, corrupt or truncated ({reason})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an audiodiff checkpoint")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    if data["version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {data['version']} is newer than this "
                              f"audiodiff reads ({FORMAT_VERSION}); upgrade audiodiff")
    try:
        data["recipe_obj"] = Recipe.from_dict(data["recipe"], where=f"{path} (recipe)")
    except RecipeError as exc:
        raise CheckpointError(str(exc)) from None
    data["schedules_obj"] = _searched_schedules(path, data.get("schedules") or {})
    steps = data.get("default_steps")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise CheckpointError(f"{path}: default_steps {steps!r} is not a positive integer")
    refine = data.get("default_refine")
    if refine is not None and (not isinstance(refine, int) or refine < 0):
        raise CheckpointError(f"{path}: default_refine {refine!r} is not a non-negative integer")
    if not isinstance(data.get("default_gain_adjust", False), bool):
        raise CheckpointError(f"{path}: default_gain_adjust {data['default_gain_adjust']!r} is not true or false")
    return data


def _searched_schedules(path: Path, table: Any) -> dict[int, SearchedSchedule]:
    """The checkpoint's `schedules` table as {steps: SearchedSchedule}, checked."""
    if not isinstance(table, dict):
        raise CheckpointError(f"{path}: schedules is not a table")
    out = {}
    for key, value in table.items():
        try:
            found = SearchedSchedule.from_dict(value)
            if int(key) != len(found.betas):
                raise ValueError(f"holds {len(found.betas)} betas")
        except ValueError as exc:
            raise CheckpointError(f"{path}: searched schedule {key!r}: {exc}") from None
        out[int(key)] = found
    return out


def save_searched_copy(data: dict[str, Any], path: str | Path, schedules: dict[int, SearchedSchedule],
                       default_steps: int | None = None) -> Path:
    """Write `data` (from load_checkpoint) to `path` with these searched schedules merged
    into its own (a step count searched again is replaced) and, if given, a new default
    step count. Atomic; every other entry is kept as it was."""
    merged = {**data.get("schedules_obj", {}), **schedules}
    steps = data.get("default_steps") if default_steps is None else default_steps
    return save_checkpoint(path, recipe=data["recipe_obj"], model=data["model"], ema=data["ema"],
                           step=data["step"], optimizer=data.get("optimizer"), extra=data.get("extra"),
                           schedules=merged, default_steps=steps, default_refine=data.get("default_refine"),
                           default_gain_adjust=data.get("default_gain_adjust"))


def export_inference_copy(data: dict[str, Any], path: str | Path, half: bool = True,
                          default_steps: int | None = None, default_refine: int | None = None,
                          default_gain_adjust: bool | None = None) -> Path:
    """Write the inference-only form of a loaded checkpoint: its EMA weights (as float16
    when `half`: a quarter of a training checkpoint, which also holds raw weights and
    Adam's two moments), its recipe, step, searched schedules, default step count and
    mel-consistency settings; no raw weights, no optimizer state. Loading casts the weights back to float32."""
    ema = {k: v.half() if half and v.is_floating_point() else v for k, v in data["ema"].items()}
    steps = data.get("default_steps") if default_steps is None else default_steps
    refine = data.get("default_refine") if default_refine is None else default_refine
    return save_checkpoint(path, recipe=data["recipe_obj"], model={}, ema=ema, step=data["step"],
                           extra=data.get("extra"), schedules=data.get("schedules_obj"), default_steps=steps,
                           default_refine=refine,
                           default_gain_adjust=data.get("default_gain_adjust") if default_gain_adjust is None
                           else default_gain_adjust)


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint with the highest step in a run folder (`step-XXXXXXXX.pt`), or None."""
    found = sorted(Path(folder).glob("step-*.pt"))
    return found[-1] if found else None


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.pt"
