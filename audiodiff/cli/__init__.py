"""The `audiodiff` command line: parse arguments, call the API, print with rich.

No model logic lives here. Every user error, a bad option or argument included, surfaces
as one line on stderr (`error: ...`) with exit code 2.

Conventions, the same in every command: `-h`/`--help`; `-o/--output FILE` names an
output file, `--out-dir DIR` an output folder (the old spellings `--out` and `bench
--json` still work, hidden, with a one-line deprecation note); enumerated options show
their choices in `--help`, taken from the registries they mean (samplers, precisions,
devices, metrics), and complete in the shell; a command that loads a model prints a
"Model: ..." line first (`model_info.model_line`).

One module per command group, each registering its commands on `app.app` when imported
(in this order, which is the order `--help` lists them):

    app.py         the Typer app, stderr, the entry point `main` (one-line errors, exit 2)
    options.py     the options several commands share, choices, deprecated spellings
    training.py    train
    inference.py   vocode, sample, mel
    models.py      info, recipes, export
    evaluation.py  eval, bench
    data.py        data check
    schedule.py    schedule search
"""
from audiodiff.cli import training  # noqa: I001, F401 - importing a module registers its commands, in this order
from audiodiff.cli import inference  # noqa: F401
from audiodiff.cli import models  # noqa: F401
from audiodiff.cli import evaluation  # noqa: F401
from audiodiff.cli import data  # noqa: F401
from audiodiff.cli import schedule  # noqa: F401
from audiodiff.cli.app import app, main

__all__ = ["app", "main"]
