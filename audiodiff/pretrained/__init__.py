"""Default models shipped inside the package, used when no checkpoint is given.

Each default is an inference-only checkpoint (`audiodiff export`: EMA weights in half
precision, with its searched schedules) and a model card beside it (`<kind>.toml`):
what it was trained on, its licence, how long and with which commands. `example.flac`
is a short CC0 speech clip to try them on (`example_path`; README.md beside it says
where it comes from).
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from audiodiff.errors import AudioError, CheckpointError, first_line

HERE = Path(__file__).parent
KINDS = ("vocoder", "generator")
DEFAULTS = {kind: HERE / f"{kind}.pt" for kind in KINDS}
EXAMPLE = HERE / "example.flac"


@dataclass(frozen=True)
class ModelCard:
    """What a shipped model is: read from `audiodiff/pretrained/<kind>.toml`."""
    name: str
    summary: str
    trained_on: str
    license: str
    training: str   # the commands that reproduce the weights
    train_hours: float
    hardware: str
    speed: str      # measured speed at the default step count
    quality: str = ""
    recipe: str = ""  # the shipped recipe it was trained with: `audiodiff train RECIPE --init <kind>` fine-tunes it

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
            names = {f.name for f in fields(cls)}
            unknown = set(table) - names
            if unknown:
                raise ValueError(f"unknown keys {', '.join(sorted(unknown))}")
            return cls(**table)
        except (OSError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: bad model card ({first_line(exc)})") from None


def default_checkpoint(kind: str) -> Path:
    """The shipped default checkpoint for 'vocoder' or 'generator'."""
    path = DEFAULTS[kind]
    if not path.is_file():
        raise CheckpointError(f"no checkpoint given (-c) and no default {kind} is shipped in this "
                              f"install ({path} is missing): train one with `audiodiff train`")
    return path


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """The checkpoint a command-line argument means: an existing file, else a shipped
    model's name ('vocoder', 'generator'). CheckpointError naming the argument otherwise."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if str(name_or_path) in KINDS:
        return default_checkpoint(str(name_or_path))
    raise CheckpointError(f"{path}: checkpoint not found (or name a shipped model: {', '.join(KINDS)})")


def model_name(path: str | Path) -> str:
    """A short name for a checkpoint: a shipped default's card name ('kathleen-frames-8x192'),
    else the path as given."""
    for kind, shipped in DEFAULTS.items():
        card = model_card(kind) if shipped.is_file() and Path(path).resolve() == shipped.resolve() else None
        if card:
            return card.name
    return str(path)


def model_card(kind: str) -> ModelCard | None:
    """The card of the shipped default `kind`, or None if there is none."""
    path = HERE / f"{kind}.toml"
    return ModelCard.load(path) if path.is_file() else None


def describe_checkpoint(path: Path, kind: str) -> str:
    """How the CLI names the model it uses: the card's name for a shipped default."""
    card = model_card(kind) if Path(path) == DEFAULTS[kind] else None
    return f"shipped default {kind} '{card.name}' ({card.trained_on})" if card else str(path)


def example_path() -> Path:
    """The shipped example clip: 3.3 s of CC0 speech (Kathleen), 22.05 kHz mono FLAC.

    It lets a fresh install vocode something without any audio of its own
    (`audiodiff vocode --example -o out.wav`, or `Vocoder.mel` of `load_audio(example_path())`).
    """
    if not EXAMPLE.is_file():
        raise AudioError(f"{EXAMPLE}: the example clip is not shipped in this install")
    return EXAMPLE
