"""The options several commands share (checkpoint, device, seed, precision, sampler, ...),
with their choices from the registries, and the helpers that make them: a choice list,
a deprecated old spelling, --set/--data recipe overrides."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from audiodiff.cli.app import note
from audiodiff.devices import DEVICE_CHOICES, is_device_name
from audiodiff.errors import AudiodiffError
from audiodiff.recipe import PRECISIONS
from audiodiff.samplers import SAMPLERS


def choice(choices: Sequence[str], valid: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """typer.Option settings for a string option that takes one of `choices`: its help
    shows them (`[a|b|c]`), the shell completes them, anything else is a one-line usage
    error naming the option (exit 2). `valid` decides for a pattern (`cuda:N`)."""
    def callback(value: Optional[str]) -> Optional[str]:
        if value is not None and not (valid(value) if valid else value in choices):
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value

    def complete(incomplete: str) -> list[str]:
        return [c for c in choices if c.startswith(incomplete) and c != "cuda:N"]

    return dict(callback=callback, autocompletion=complete, metavar=f"[{'|'.join(choices)}]")



def renamed(old: str, new: str) -> dict[str, Any]:
    """typer.Option settings for the hidden old spelling `old` of option `new`: it still
    works, with a one-line deprecation note."""
    def callback(value: Any) -> Any:
        if value is not None:
            note(f"{old} is deprecated; use {new} (same meaning)")
        return value

    return dict(hidden=True, callback=callback, show_default=False)



def either(value: Any, old_value: Any, new: str, old: str) -> Any:
    """The value of an option given by its new or (deprecated) old name, not both."""
    if old_value is None:
        return value
    if value is not None:
        raise AudiodiffError(f"{old} is the old name of {new}; give one of them")
    return old_value



def recipe_overrides(set_: Optional[list[str]], data: Optional[Path]) -> list[str]:
    """The --set overrides, with --data DIR as data.root (a TOML string, so any path survives)."""
    import json

    overrides = list(set_ or [])
    if data is not None:
        if any(item.split("=", 1)[0].strip() == "data.root" for item in overrides):
            raise AudiodiffError("--data and --set data.root both name the data folder; give one")
        overrides.append(f"data.root={json.dumps(str(data))}")
    return overrides



CheckpointOpt = Annotated[Optional[Path], typer.Option("--checkpoint", "-c", help="Checkpoint (.pt). Default: the shipped model.")]
DeviceOpt = Annotated[str, typer.Option(help="Where the network runs: cuda:N is the N-th GPU; auto: cuda if there is one, else cpu.", **choice(DEVICE_CHOICES, valid=is_device_name))]
SeedOpt = Annotated[int, typer.Option(help="Seed of the sampling noise.")]
PrecisionOpt = Annotated[str, typer.Option(help="The network's arithmetic (fp16: CUDA only; bf16 on CPU is allowed but fast only with bf16 instructions).", **choice(PRECISIONS))]
GainAdjustOpt = Annotated[Optional[bool], typer.Option("--gain-adjust/--no-gain-adjust", help="Match each step's clean estimate to the mel (WaveFit's gain adjustment). Default: the checkpoint's setting (the shipped vocoder: on), else off (the network's own sampler).")]
RefineOpt = Annotated[Optional[int], typer.Option(help="Fast Griffin-Lim iterations with band gains after sampling, from the vocoder's output. Default: the checkpoint's setting, else 0.")]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="Intra-op CPU threads (default: torch's default, one per core).")]
SamplerOpt = Annotated[Optional[str], typer.Option(help="ddpm: ancestral; ddim: deterministic. Default: the checkpoint's searched choice for the step count, else ddpm.", show_default=False, **choice(tuple(SAMPLERS)))]
RecipeArg = Annotated[str, typer.Argument(help="A shipped recipe's name (tiny, kathleen, ...: see `audiodiff recipes`) or a recipe TOML file.")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help="Folder of the training audio: short for --set data.root=DIR (a relative recipe root is read from the current folder).")]

