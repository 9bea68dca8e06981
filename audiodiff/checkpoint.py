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

It is written to a temp file in the same folder, flushed, and renamed, so a killed
process leaves either the old file or the new one. It is read with
`torch.load(weights_only=True)`: no pickled code runs. Anything else gives a
CheckpointError whose one line names the file.
"""
from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from audiodiff.atomic import atomic_path
from audiodiff.errors import CheckpointError, RecipeError
from audiodiff.recipe import Recipe

FORMAT = "audiodiff-checkpoint"
FORMAT_VERSION = 1
REQUIRED = ("format", "version", "step", "recipe", "model", "ema")


def save_checkpoint(path: str | Path, *, recipe: Recipe, model: dict, ema: dict, step: int,
                    optimizer: dict | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically; returns its path."""
    path = Path(path)
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "step": int(step),
               "recipe": recipe.to_dict(), "model": model, "ema": ema,
               "optimizer": optimizer, "extra": dict(extra or {})}
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
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
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
    return data


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint with the highest step in a run folder (`step-XXXXXXXX.pt`), or None."""
    found = sorted(Path(folder).glob("step-*.pt"))
    return found[-1] if found else None


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.pt"
