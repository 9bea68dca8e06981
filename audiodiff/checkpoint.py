"""The checkpoint: one typed `Checkpoint` in code, a dict of plain types and tensors on
disk, both defined here and nowhere else.

On disk:

    format    "audiodiff-checkpoint"
    version   FORMAT_VERSION
    step      training steps done
    recipe    Recipe.to_dict(): everything needed to rebuild the model and mel
    model     network state dict (raw weights; empty in an inference-only file)
    ema       network state dict (EMA weights: what inference uses)
    optimizer optimizer state dict, or None in an inference-only file
    extra     dict of plain values (e.g. generator state, run info)
    schedules optional: {"N": SearchedSchedule.to_dict()} from `audiodiff schedule search`
    default_steps optional: the step count inference uses when none is asked for
    default_refine optional: the mel-consistency refinement iterations `vocode` runs after
              sampling when none are asked for (see consistency.py; 0 when absent)
    default_gain_adjust optional: whether `vocode` applies the mel gain adjustment at each
              step when not told (off when absent)
    defaults_inherited_from optional: the parent model the defaults above came from, in a
              fine-tune (`train --init`)

The last five are `Checkpoint.defaults` (an InferenceDefaults) in code. Optional keys
are written only when set, so files written before a key existed load unchanged.

It is written to a temp file in the same folder, flushed, and renamed, so a killed
process leaves either the old file or the new one. It is read with
`torch.load(weights_only=True)`: no pickled code runs. Anything else gives a
CheckpointError whose one line names the file.
"""
from __future__ import annotations

import dataclasses
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from audiodiff.atomic import atomic_path
from audiodiff.errors import CheckpointError, RecipeError, first_line
from audiodiff.inference_defaults import InferenceDefaults
from audiodiff.recipe import Recipe
from audiodiff.searched_schedule import SearchedSchedule

FORMAT = "audiodiff-checkpoint"
FORMAT_VERSION = 1
REQUIRED = ("format", "version", "step", "recipe", "model", "ema")

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A model as training leaves it and inference takes it.

    `recipe` rebuilds the network and its mel; `model` are the raw weights (empty in an
    inference-only file), `ema` the averaged weights inference uses; `optimizer` the
    optimiser's state (None in an inference-only file); `step` the training steps done;
    `extra` plain run values (batch, precision, grad scaler); `defaults` how inference
    runs the model when the caller does not say (steps, gain adjustment, refinement,
    searched schedules).
    """
    recipe: Recipe
    step: int
    model: StateDict
    ema: StateDict
    optimizer: dict | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    defaults: InferenceDefaults = field(default_factory=InferenceDefaults)

    @property
    def inference_only(self) -> bool:
        """An `audiodiff export` copy: EMA weights only, no raw weights or optimiser."""
        return not self.model

    def inference_copy(self, half: bool = True) -> Checkpoint:
        """The inference-only form: the EMA weights (as float16 when `half`: a quarter of a
        training checkpoint, which also holds raw weights and Adam's two moments), with
        the recipe, step, extra and defaults; no raw weights, no optimiser state. Loading
        casts the weights back to the network's float32."""
        ema = {k: v.half() if half and v.is_floating_point() else v for k, v in self.ema.items()}
        return dataclasses.replace(self, model={}, ema=ema, optimizer=None)

    def with_defaults(self, defaults: InferenceDefaults) -> Checkpoint:
        return dataclasses.replace(self, defaults=defaults)


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    """Write a checkpoint atomically; returns its path."""
    path = Path(path)
    with atomic_path(path, write_errors=(RuntimeError,)) as tmp:  # torch.save's failed write: a RuntimeError
        torch.save(_to_payload(checkpoint), tmp)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and check a checkpoint (tensors on CPU); CheckpointError naming the file if it
    is missing, foreign, corrupt, or holds a bad value."""
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
        raise CheckpointError(f"{path}: cannot read checkpoint, corrupt or truncated ({first_line(exc, 120)})") from None
    return _from_payload(path, data)


def save_searched_copy(checkpoint: Checkpoint, path: str | Path, schedules: dict[int, SearchedSchedule],
                       default_steps: int | None = None) -> Path:
    """Write `checkpoint` to `path` with these searched schedules merged into its own (a
    step count searched again is replaced) and, if given, a new default step count.
    Atomic; everything else is kept as it was."""
    defaults = checkpoint.defaults.with_schedules(schedules).with_settings(steps=default_steps)
    return save_checkpoint(path, checkpoint.with_defaults(defaults))


def export_inference_copy(checkpoint: Checkpoint, path: str | Path, half: bool = True) -> Path:
    """Write `checkpoint.inference_copy(half)` to `path`; returns the path."""
    return save_checkpoint(path, checkpoint.inference_copy(half))


def _to_payload(ckpt: Checkpoint) -> dict[str, Any]:
    """The on-disk dict of a Checkpoint (see the module docstring)."""
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "step": int(ckpt.step),
               "recipe": ckpt.recipe.to_dict(), "model": ckpt.model, "ema": ckpt.ema,
               "optimizer": ckpt.optimizer, "extra": dict(ckpt.extra)}
    d = ckpt.defaults
    if d.schedules:
        payload["schedules"] = {str(n): s.to_dict() for n, s in sorted(d.schedules.items())}
    for key, value in (("default_steps", d.steps), ("default_refine", d.refine),
                       ("default_gain_adjust", d.gain_adjust), ("defaults_inherited_from", d.inherited_from)):
        if value is not None:
            payload[key] = value
    return payload


def _from_payload(path: Path, data: Any) -> Checkpoint:
    """A Checkpoint from the on-disk dict, checked; CheckpointError naming `path` otherwise."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an audiodiff checkpoint")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    if data["version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {data['version']} is newer than this "
                              f"audiodiff reads ({FORMAT_VERSION}); upgrade audiodiff")
    try:
        recipe = Recipe.from_dict(data["recipe"], where=f"{path} (recipe)")
    except RecipeError as exc:
        raise CheckpointError(str(exc)) from None
    origin = data.get("defaults_inherited_from")
    if origin is not None and not isinstance(origin, str):
        raise CheckpointError(f"{path}: defaults_inherited_from {origin!r} is not a model's name")
    try:
        defaults = InferenceDefaults(steps=data.get("default_steps"), gain_adjust=data.get("default_gain_adjust"),
                                     refine=data.get("default_refine"),
                                     schedules=_searched_schedules(path, data.get("schedules") or {}),
                                     inherited_from=origin)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return Checkpoint(recipe=recipe, step=data["step"], model=data["model"], ema=data["ema"],
                      optimizer=data.get("optimizer"), extra=dict(data.get("extra") or {}), defaults=defaults)


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


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint with the highest step in a run folder (`step-XXXXXXXX.pt`), or None."""
    found = sorted(Path(folder).glob("step-*.pt"))
    return found[-1] if found else None


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.pt"
