"""Default models shipped inside the package, used when no checkpoint is given."""
from __future__ import annotations

from pathlib import Path

from audiodiff.errors import CheckpointError

HERE = Path(__file__).parent
DEFAULTS = {"vocoder": HERE / "vocoder.pt", "generator": HERE / "generator.pt"}


def default_checkpoint(kind: str) -> Path:
    """The shipped default checkpoint for 'vocoder' or 'generator'."""
    path = DEFAULTS[kind]
    if not path.is_file():
        raise CheckpointError(f"no checkpoint given (-c) and no default {kind} is shipped in this "
                              f"install ({path} is missing): train one with `audiodiff train`")
    return path
