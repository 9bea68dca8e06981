"""`audiodiff train`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from audiodiff.cli.app import app, err
from audiodiff.cli.options import DataOpt, DeviceOpt, RecipeArg, either, recipe_overrides, renamed


@app.command()
def train(
    recipe: RecipeArg,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Run folder (default runs/<recipe name>). Re-running resumes.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", **renamed("--out", "--out-dir"))] = None,
    data: DataOpt = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop at this step (overrides train.max_steps).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe value: section.key=value (repeatable).")] = None,
    device: DeviceOpt = "auto",
    seed: Annotated[Optional[int], typer.Option(help="Seed (overrides train.seed).")] = None,
    init: Annotated[Optional[str], typer.Option(help="A new run starts from this checkpoint's weights: a file, or a shipped model's name (vocoder, generator). A fine-tune: its step count goes on, the optimiser starts fresh, and its inference defaults (steps, gain adjustment, searched schedules) are inherited.")] = None,
) -> None:
    """Train a model from a recipe; resumes from the newest checkpoint in --out-dir. Under torchrun, data-parallel."""
    from audiodiff.training.distributed import is_main_process
    from audiodiff.recipe import load_recipe, resolve_recipe
    from audiodiff.training import TrainOptions
    from audiodiff.training import train as run_training

    err.quiet = not is_main_process()  # under torchrun only rank 0 prints
    out = either(out_dir, out, "--out-dir", "--out")
    overrides = recipe_overrides(set_, data)
    if max_steps is not None:
        overrides.append(f"train.max_steps={max_steps}")
    if seed is not None:
        overrides.append(f"train.seed={seed}")
    path = resolve_recipe(recipe)
    parsed = load_recipe(path, overrides)
    out = out or Path("runs") / path.stem
    try:
        last = run_training(parsed, out, options=TrainOptions(device=device, console=err, init=init))
    except KeyboardInterrupt:
        err.print("Interrupted; re-run the same command to resume.")
        raise typer.Exit(130) from None
    err.print(f"Checkpoint: {last}")

