"""`audiodiff data check`."""
from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console

from audiodiff.cli.app import app, err
from audiodiff.cli.options import DataOpt, RecipeArg, recipe_overrides


data_app = typer.Typer(no_args_is_help=True, help="Check a recipe's data set before training; build its resampled cache.")
app.add_typer(data_app, name="data")


@data_app.command("check")
def data_check(
    recipe: RecipeArg,
    data: DataOpt = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe value, e.g. data.source=folder (repeatable).")] = None,
    write_cache: Annotated[bool, typer.Option("--write-cache", help="Write copies resampled to the model's rate under data.cache_dir.")] = False,
    show: Annotated[int, typer.Option(help="Name at most this many files of each problem kind.")] = 10,
) -> None:
    """Scan a data set: files, duration, rates, channels, short and bad files. Exit 2 if unusable."""
    from audiodiff.data.check import run_check
    from audiodiff.recipe import load_recipe, resolve_recipe

    path = resolve_recipe(recipe)
    parsed = load_recipe(path, recipe_overrides(set_, data))
    run_check(parsed, str(path), out=Console(), err=err, write=write_cache, show=show)

