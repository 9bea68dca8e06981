"""`audiodiff info`, `recipes` and `export`: describe checkpoints and recipes, write an
inference-only copy."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from audiodiff.atomic import check_writable
from audiodiff.cli.app import app, err, say
from audiodiff.cli.options import CheckpointOpt
from audiodiff.errors import AudiodiffError


@app.command()
def info(
    checkpoint: CheckpointOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead: the model card, recipe, step, size and each inference default with where it comes from (without -c: one object per shipped model, by kind).")] = False,
) -> None:
    """Describe a checkpoint, or without -c the shipped default models: what each is,
    what it was trained on, its steps, default step count, schedules and speed."""
    import json

    from audiodiff.checkpoint import load_checkpoint
    from audiodiff.model_info import model_kind, model_line, model_summary
    from audiodiff.pretrained import DEFAULTS, KINDS, model_card

    if checkpoint is not None:
        models = [(None, checkpoint, None)]
    else:
        models = [(kind, DEFAULTS[kind], model_card(kind)) for kind in KINDS if DEFAULTS[kind].is_file()]
        if not models:
            raise AudiodiffError("no default models are shipped in this install; pass -c CHECKPOINT")
    loaded = [(kind, path, card, load_checkpoint(path)) for kind, path, card in models]  # every one, before printing
    out = Console()
    summaries = {}
    for kind, path, card, data in loaded:
        say(model_line(path, data.recipe, data.step, data.defaults))
        if as_json:
            summaries[kind or model_kind(data.recipe)] = model_summary(path, data, card)
            continue
        if kind is not None:
            out.print(f"[bold]Default {kind}[/] (used by `audiodiff {'vocode' if kind == 'vocoder' else 'sample'}` "
                      f"without -c)")
        _describe(out, path, card, data)
        if kind is not None:
            out.print()
    if as_json:
        doc = next(iter(summaries.values())) if checkpoint is not None else summaries
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")



@app.command("recipes")
def recipes_() -> None:
    """List the shipped recipes: name, what it trains, the data it expects, rough training time."""
    from rich.table import Table

    from audiodiff.recipe import shipped_recipes

    table = Table(title="Shipped recipes (audiodiff train NAME)")
    for name in ("name", "trains", "data it expects (data.source at data.root)", "time (CPU / one GPU)"):
        table.add_column(name, no_wrap=name == "name")
    for info in shipped_recipes():
        table.add_row(info.name, info.summary, f"{info.data_source} at {info.data_root}", info.time)
    out = Console()
    out.print(table)
    out.print("A relative data.root is read from the current folder; `--data DIR` points a recipe at "
              "your own audio (`--set data.source=folder` for a plain folder of clips).", highlight=False)



def _describe(out: Console, ckpt: Path, card, data) -> None:
    """Print one checkpoint's description (and its model card, for a shipped default)."""
    from audiodiff.sampling_plan import Overrides, resolve_plan

    r = data.recipe
    params = sum(t.numel() for t in data.ema.values())
    kind = "vocoder (mel-conditioned)" if r.model.conditional else "unconditional generator"
    say = lambda text: out.print(text, highlight=False)  # noqa: E731
    say(f"{f'{card.name}: ' if card else ''}{ckpt}: {kind}, trained {data.step} steps")
    if card:
        say(f"  {card.summary}")
        say(f"  trained on: {card.trained_on}")
        say(f"  licence: {card.license}")
        say(f"  training: {card.train_hours:g} hours on {card.hardware}: {card.training}")
        if card.recipe:
            say(f"  recipe: {card.recipe} (fine-tune: audiodiff train {card.recipe} --init {'vocoder' if r.model.conditional else 'generator'} ...)")
        say(f"  speed: {card.speed}")
        if card.quality:
            say(f"  quality: {card.quality}")
    say(f"  audio: {r.audio.sample_rate} Hz, preset {r.audio.preset}, {r.audio.n_mels} mels, hop {r.audio.hop_length}")
    say(f"  model: {r.model.describe()}, {params / 1e6:.2f} M parameters")
    scale = f", data scale {r.diffusion.data_scale:g}" if r.diffusion.data_scale != 1 else ""
    say(f"  diffusion: {r.diffusion.schedule} x {r.diffusion.steps}, fast schedule {len(r.diffusion.fast_betas)} steps{scale}")
    if not card:
        say(f"  data: {r.data.source} at {r.data.root}")
    plan, defaults = resolve_plan(Overrides(), data.defaults, r), data.defaults
    say(f"  default steps: {plan.steps}{'' if defaults.steps else ' (not set in the checkpoint)'}")
    if r.model.conditional:
        say(f"  mel consistency: gain adjustment {'on' if plan.gain_adjust else 'off'}, "
            f"{plan.refine} refinement iterations")
    say(f"  {defaults.describe()}")
    for n, found in sorted(defaults.schedules.items()):
        say(f"  searched {n}-step schedule: {found.sampler}"
            f"{f' eta {found.eta:.2f}' if found.sampler == 'ddim' else ''}, {found.describe_score()}, "
            f"betas {', '.join(f'{b:.3g}' for b in found.betas)}")



@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Training checkpoint (.pt).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Inference-only checkpoint to write.")],
    fp32: Annotated[bool, typer.Option("--fp32", help="Keep float32 weights (default: float16, half the size).")] = False,
    default_steps: Annotated[Optional[int], typer.Option(help="Store this as the default step count.")] = None,
    refine: Annotated[Optional[int], typer.Option(help="Store this as the default mel-consistency refinement iterations (vocoders).")] = None,
    gain_adjust: Annotated[Optional[bool], typer.Option("--gain-adjust/--no-gain-adjust", help="Store whether vocode applies the mel gain adjustment by default (vocoders).")] = None,
) -> None:
    """Write an inference-only copy of a checkpoint: EMA weights (float16), recipe, searched schedules."""
    from audiodiff.checkpoint import export_inference_copy, load_checkpoint
    from audiodiff.consistency import check_options

    if output.resolve() == checkpoint.resolve():
        raise AudiodiffError(f"-o {output} is the input checkpoint; write the export elsewhere")
    check_writable(output.parent)
    if default_steps is not None and default_steps < 1:
        raise AudiodiffError(f"--default-steps {default_steps}: must be >= 1")
    data = load_checkpoint(checkpoint)
    check_options(gain_adjust, refine, data.recipe.model.conditional, str(checkpoint))
    defaults = data.defaults.with_settings(steps=default_steps, gain_adjust=gain_adjust, refine=refine)
    export_inference_copy(data.with_defaults(defaults), output, half=not fp32)
    err.print(f"{checkpoint} ({checkpoint.stat().st_size / 2 ** 20:.1f} MiB) -> {output} "
              f"({output.stat().st_size / 2 ** 20:.2f} MiB, step {data.step})", highlight=False)

