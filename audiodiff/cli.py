"""The `audiodiff` command line: parse arguments, call the API, print with rich.

No model logic lives here. Every user error, a bad option or argument included, surfaces
as one line on stderr (`error: ...`) with exit code 2.

Conventions, the same in every command: `-h`/`--help`; `-o/--output FILE` names an
output file, `--out-dir DIR` an output folder (the old spellings `--out` and `bench
--json` still work, hidden, with a one-line deprecation note); enumerated options show
their choices in `--help`, taken from the registries they mean (samplers, precisions,
devices, metrics), and complete in the shell; a command that loads a model prints a
"Model: ..." line first (`model_info.model_line`).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from audiodiff.atomic import check_writable
from audiodiff.devices import DEVICE_CHOICES, is_device_name
from audiodiff.errors import AudiodiffError
from audiodiff.recipe import PRECISIONS
from audiodiff.samplers import SAMPLERS
from audiodiff.schedule_search import DEFAULT_METRIC, METRICS
from audiodiff.searched_schedule import LEGACY_METRIC_NAMES

CONTEXT = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, context_settings=CONTEXT,
                  help="Diffusion models of raw audio: train a DiffWave vocoder or generator, "
                       "vocode mels, sample sound.")
err = Console(stderr=True)


def _note(text: str) -> None:
    """A one-line note on stderr (under torchrun, from rank 0 only)."""
    from audiodiff.training.distributed import is_main_process

    if is_main_process():
        err.print(f"note: {text}", highlight=False, markup=False, soft_wrap=True)


def _choice(choices: Sequence[str], valid: Callable[[str], bool] | None = None) -> dict[str, Any]:
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


def _renamed(old: str, new: str) -> dict[str, Any]:
    """typer.Option settings for the hidden old spelling `old` of option `new`: it still
    works, with a one-line deprecation note."""
    def callback(value: Any) -> Any:
        if value is not None:
            _note(f"{old} is deprecated; use {new} (same meaning)")
        return value

    return dict(hidden=True, callback=callback, show_default=False)


def _either(value: Any, old_value: Any, new: str, old: str) -> Any:
    """The value of an option given by its new or (deprecated) old name, not both."""
    if old_value is None:
        return value
    if value is not None:
        raise AudiodiffError(f"{old} is the old name of {new}; give one of them")
    return old_value


def _metric_names(option: str, text: Optional[str]) -> list[str]:
    """Comma-separated metric names as keys of METRICS (legacy names renamed, with a note);
    a one-line usage error for any other name."""
    names = []
    for name in (n.strip() for n in (text or "").split(",")):
        if not name:
            continue
        if name in LEGACY_METRIC_NAMES:
            _note(f"{option} {name} is deprecated; its name is now {LEGACY_METRIC_NAMES[name]}")
            name = LEGACY_METRIC_NAMES[name]
        if name not in METRICS:
            raise typer.BadParameter(f"{name!r} is not one of {', '.join(METRICS)}", param_hint=f"'{option}'")
        names.append(name)
    return names


_METRIC_CHOICES = ", ".join(f"{key} ({m.better} is better)" for key, m in METRICS.items())


def _complete_metric(incomplete: str) -> list[str]:
    return [k for k in METRICS if k.startswith(incomplete)]


def _metric_option(value: Optional[str]) -> Optional[str]:
    """--metric: one metric's key (a legacy name renamed, with a note)."""
    if value is None:
        return value
    names = _metric_names("--metric", value)
    if len(names) != 1:
        raise typer.BadParameter(f"{value!r}: name one metric (--guard takes several)", param_hint="'--metric'")
    return names[0]


def _guard_option(value: Optional[str]) -> Optional[str]:
    """--guard: comma-separated metric keys (legacy names renamed, with a note)."""
    return None if value is None else ",".join(_metric_names("--guard", value))


CheckpointOpt = Annotated[Optional[Path], typer.Option("--checkpoint", "-c", help="Checkpoint (.pt). Default: the shipped model.")]
DeviceOpt = Annotated[str, typer.Option(help="Where the network runs: cuda:N is the N-th GPU; auto: cuda if there is one, else cpu.", **_choice(DEVICE_CHOICES, valid=is_device_name))]
SeedOpt = Annotated[int, typer.Option(help="Seed of the sampling noise.")]
PrecisionOpt = Annotated[str, typer.Option(help="The network's arithmetic (fp16: CUDA only; bf16 on CPU is allowed but fast only with bf16 instructions).", **_choice(PRECISIONS))]
GainAdjustOpt = Annotated[Optional[bool], typer.Option("--gain-adjust/--no-gain-adjust", help="Match each step's clean estimate to the mel (WaveFit's gain adjustment). Default: the checkpoint's setting (the shipped vocoder: on), else off (the network's own sampler).")]
RefineOpt = Annotated[Optional[int], typer.Option(help="Fast Griffin-Lim iterations with band gains after sampling, from the vocoder's output. Default: the checkpoint's setting, else 0.")]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="Intra-op CPU threads (default: torch's default, one per core).")]
SamplerOpt = Annotated[Optional[str], typer.Option(help="ddpm: ancestral; ddim: deterministic. Default: the checkpoint's searched choice for the step count, else ddpm.", show_default=False, **_choice(tuple(SAMPLERS)))]
RecipeArg = Annotated[str, typer.Argument(help="A shipped recipe's name (tiny, kathleen, ...: see `audiodiff recipes`) or a recipe TOML file.")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help="Folder of the training audio: short for --set data.root=DIR (a relative recipe root is read from the current folder).")]


def _print_version(value: bool) -> None:
    """Eager --version: print `audiodiff X.Y.Z` and exit 0 before any command runs."""
    if value:
        from audiodiff import __version__

        typer.echo(f"audiodiff {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Diffusion models of raw audio: train a DiffWave vocoder or generator, vocode mels, sample sound."""


def _recipe_overrides(set_: Optional[list[str]], data: Optional[Path]) -> list[str]:
    """The --set overrides, with --data DIR as data.root (a TOML string, so any path survives)."""
    import json

    overrides = list(set_ or [])
    if data is not None:
        if any(item.split("=", 1)[0].strip() == "data.root" for item in overrides):
            raise AudiodiffError("--data and --set data.root both name the data folder; give one")
        overrides.append(f"data.root={json.dumps(str(data))}")
    return overrides


@app.command()
def train(
    recipe: RecipeArg,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Run folder (default runs/<recipe name>). Re-running resumes.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", **_renamed("--out", "--out-dir"))] = None,
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
    from audiodiff.training import train as run_training

    err.quiet = not is_main_process()  # under torchrun only rank 0 prints
    out = _either(out_dir, out, "--out-dir", "--out")
    overrides = _recipe_overrides(set_, data)
    if max_steps is not None:
        overrides.append(f"train.max_steps={max_steps}")
    if seed is not None:
        overrides.append(f"train.seed={seed}")
    path = resolve_recipe(recipe)
    parsed = load_recipe(path, overrides)
    out = out or Path("runs") / path.stem
    try:
        last = run_training(parsed, out, device=device, console=err, init=init)
    except KeyboardInterrupt:
        err.print("Interrupted; re-run the same command to resume.")
        raise typer.Exit(130) from None
    err.print(f"Checkpoint: {last}")


@app.command()
def vocode(
    inputs: Annotated[Optional[list[Path]], typer.Argument(help="Audio files (resynthesised from their mel), mels (.npy/.pt) shaped n_mels x frames, or folders of either (every such file below).", show_default=False)] = None,
    example: Annotated[bool, typer.Option("--example", help="Also vocode the shipped example clip (3.3 s of CC0 speech; `audiodiff vocode --example -o out.wav` needs no files of your own).")] = False,
    checkpoint: CheckpointOpt = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output .wav/.flac (one input).", show_default=False)] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Output folder (any number of inputs): STEM.wav for each. Default: STEM.vocoded.wav here.", show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option(help="Network evaluations (default: the checkpoint's default, else 6). A searched schedule for this count is used if the checkpoint has one; 50 = the full training schedule.")] = None,
    sampler: SamplerOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    precision: PrecisionOpt = "fp32",
    gain_adjust: GainAdjustOpt = None,
    refine: RefineOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Turn mel spectrograms (or the mels of audio files) into waveforms.
    With no files of your own: `audiodiff vocode --example -o out.wav`."""
    from audiodiff.audio import (AUDIO_SUFFIXES, MEL_SUFFIXES, check_mel, collect_files, load_audio, load_mel,
                                 output_format, save_audio)
    from audiodiff.consistency import check_options
    from audiodiff.devices import set_cpu_threads
    from audiodiff.inference import Vocoder
    from audiodiff.pretrained import default_checkpoint, example_path

    if output is not None and out_dir is not None:
        raise AudiodiffError("-o names one output file, --out-dir a folder; give one of them")
    files = collect_files([*(inputs or []), *([example_path()] if example else [])],
                          AUDIO_SUFFIXES + MEL_SUFFIXES, "audio or mel files")
    if not files:
        raise AudiodiffError("nothing to vocode: give audio or mel files (or folders), or --example for the shipped clip")
    if output is not None and len(files) > 1:
        raise AudiodiffError(f"-o names one output file but there are {len(files)} inputs; use --out-dir")
    targets = [output or (out_dir or Path(".")) / f"{path.stem}{'' if out_dir else '.vocoded'}.wav" for path in files]
    _check_targets(files, targets)
    check_options(gain_adjust, refine)
    set_cpu_threads(threads)
    if output is not None:
        output_format(output)
    check_writable(output.parent if output is not None else out_dir or Path("."))
    ckpt = checkpoint or default_checkpoint("vocoder")
    vocoder = Vocoder.from_checkpoint(ckpt, device=device, precision=precision)
    plan = vocoder.plan(steps=steps, sampler=sampler, gain_adjust=gain_adjust, refine=refine)
    jobs = []  # read every input first: a bad one fails before any work is done
    for path in files:
        if path.suffix.lower() in MEL_SUFFIXES:
            mel = load_mel(path)
            check_mel(mel, vocoder.recipe.audio, str(path), checkpoint=None if checkpoint is None else str(checkpoint))
            jobs.append((path, mel, None))
        else:
            wav = load_audio(path, vocoder.sample_rate)
            jobs.append((path, vocoder.mel(wav).cpu(), wav.shape[-1]))
    _say(vocoder.describe(plan))
    for (path, mel, length), target in zip(jobs, targets):
        with _progress() as progress:
            task = progress.add_task(path.name, total=plan.steps)
            wav = vocoder.vocode(mel, plan, seed=seed, name=str(path),
                                 on_step=lambda k: progress.update(task, completed=k))
        save_audio(target, wav[:length] if length else wav, vocoder.sample_rate)
        err.print(f"{path} -> {target} ({wav[:length].shape[-1] / vocoder.sample_rate:.2f} s)")


def _check_targets(inputs: Sequence[Path], targets: Sequence[Path]) -> None:
    """One-line errors before any work when two inputs would write the same output file,
    or an output would replace an input."""
    seen: dict[Path, Path] = {}
    sources = {p.resolve() for p in inputs}
    for path, target in zip(inputs, targets):
        key = target.resolve()
        if key in seen:
            raise AudiodiffError(f"{seen[key]} and {path} would both be written to {target}; "
                                 f"vocode them into separate --out-dir folders")
        if key in sources:
            raise AudiodiffError(f"{target}: the output would replace an input; choose another -o or --out-dir")
        seen[key] = path


def _say(line: str) -> None:
    """A line on stderr as the library wrote it: the "Model: ..." line a command that
    loads a model prints first (model_info.model_line), a library's log line."""
    err.print(line, highlight=False, markup=False, soft_wrap=True)


@app.command()
def sample(
    seconds: Annotated[float, typer.Option(help="Length of each clip in seconds: any length that fits in memory (sampling holds the whole clip; a longer one is refused at once, with the limit).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output .wav/.flac; with -n > 1, numbered NAME-0.wav, NAME-1.wav ...")],
    checkpoint: CheckpointOpt = None,
    count: Annotated[int, typer.Option("-n", "--count", help="Number of clips.")] = 1,
    steps: Annotated[Optional[int], typer.Option(help="Network evaluations (default: the checkpoint's default, else the training schedule's length).")] = None,
    sampler: SamplerOpt = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    precision: PrecisionOpt = "fp32",
    threads: ThreadsOpt = None,
) -> None:
    """Generate sound unconditionally from an unconditional model."""
    from audiodiff.audio import output_format, save_audio
    from audiodiff.devices import set_cpu_threads
    from audiodiff.inference import Generator
    from audiodiff.memory import check_sample_memory
    from audiodiff.pretrained import default_checkpoint

    set_cpu_threads(threads)
    output_format(output)
    check_writable(output.parent)
    ckpt = checkpoint or default_checkpoint("generator")
    generator = Generator.from_checkpoint(ckpt, device=device, precision=precision)
    check_sample_memory(seconds, count, generator.sample_rate, generator.device)  # refuse what cannot fit, at once
    plan = generator.plan(steps=steps, sampler=sampler)
    _say(generator.describe(plan))
    with _progress() as progress:
        task = progress.add_task("sample", total=plan.steps)
        clips = generator.generate(seconds, count=count, plan=plan, seed=seed,
                                   on_step=lambda k: progress.update(task, completed=k))
    for i, clip in enumerate(clips):
        target = output if count == 1 else output.with_name(f"{output.stem}-{i}{output.suffix}")
        save_audio(target, clip, generator.sample_rate)
        err.print(f"-> {target} ({clip.shape[-1] / generator.sample_rate:.2f} s)")


@app.command("mel")
def mel_(
    audio: Annotated[Path, typer.Argument(help="Audio file (resampled to the model's rate, mixed to mono).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Mel to write: .npy (float32) or .pt, shaped n_mels x frames.")],
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", "-c", help="Vocoder checkpoint whose mel convention to use. Default: the shipped vocoder.")] = None,
) -> None:
    """Write a vocoder's own mel of an audio file (n_mels x frames): what `vocode` expects,
    to compare with a TTS model's mel (shape, scale, range) or to vocode later."""
    from audiodiff.audio import load_audio, mel_output_format, save_mel
    from audiodiff.inference import Vocoder
    from audiodiff.pretrained import default_checkpoint

    mel_output_format(output)
    check_writable(output.parent)
    ckpt = checkpoint or default_checkpoint("vocoder")
    vocoder = Vocoder.from_checkpoint(ckpt, device="cpu")
    wav = load_audio(audio, vocoder.sample_rate)
    _say(vocoder.describe())
    mel = vocoder.mel(wav).cpu()
    save_mel(output, mel)
    cfg = vocoder.recipe.audio
    err.print(f"{audio} -> {output}: {list(mel.shape)} float32, values {float(mel.min()):.3g} to {float(mel.max()):.3g} "
              f"(the mel of {ckpt.name}: preset {cfg.preset}, {cfg.compression} scale, {cfg.sample_rate} Hz, "
              f"hop {cfg.hop_length})", highlight=False, markup=False, soft_wrap=True)


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
        _say(model_line(path, data.recipe, data.step, data.defaults))
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
        say(f"  speed: {card.speed}")
        if card.quality:
            say(f"  quality: {card.quality}")
    say(f"  audio: {r.audio.sample_rate} Hz, preset {r.audio.preset}, {r.audio.n_mels} mels, hop {r.audio.hop_length}")
    say(f"  model: {r.model.describe()}, {params / 1e6:.2f} M parameters")
    say(f"  diffusion: {r.diffusion.schedule} x {r.diffusion.steps}, fast schedule {len(r.diffusion.fast_betas)} steps")
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


@app.command("eval")
def eval_(
    references: Annotated[list[Path], typer.Argument(help="Reference audio files or folders (folders: every audio file below).")],
    checkpoint: CheckpointOpt = None,
    steps: Annotated[Optional[str], typer.Option(help="Comma-separated step counts. Default: 2,4,6,50 for a vocoder, the training schedule's length for a generator.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Output folder (default eval/<checkpoint stem>): results.csv, results.json, report.html, img/, audio/.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", **_renamed("--out", "--out-dir"))] = None,
    count: Annotated[int, typer.Option("-n", "--count", help="Unconditional models: clips generated per step count.")] = 8,
    seconds: Annotated[Optional[float], typer.Option(help="Unconditional models: length of each clip (default: the median reference length, at most 10 s).")] = None,
    sampler: SamplerOpt = None,
    precision: PrecisionOpt = "fp32",
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    gain_adjust: GainAdjustOpt = None,
    refine: RefineOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Score a checkpoint against reference audio at several step counts; write CSV, JSON and report.html."""
    from rich.table import Table

    from audiodiff.devices import set_cpu_threads
    from audiodiff.evaluation.evaluate import EvalRequest, evaluate, parse_steps
    from audiodiff.evaluation.metrics import format_value
    from audiodiff.evaluation.report import write_report
    from audiodiff.pretrained import default_checkpoint

    out_dir = _either(out_dir, out, "--out-dir", "--out")
    set_cpu_threads(threads)
    counts = parse_steps(steps)
    ckpt = checkpoint or default_checkpoint("vocoder")
    out_dir = out_dir or Path("eval") / ckpt.stem
    check_writable(out_dir)
    request = EvalRequest(ckpt, references, out_dir, steps=counts, seed=seed, device=device, sampler=sampler,
                          precision=precision, count=count, seconds=seconds, gain_adjust=gain_adjust, refine=refine)
    result = evaluate(request, log=_say)
    write_report(result)
    table = Table(title=f"{ckpt}: mean over {len(result.files)} reference file(s)" if result.kind == "vocoder"
                  else f"{ckpt}: {result.meta['count']} generated clip(s) per row vs {len(result.files)} reference clip(s)")
    table.add_column("system", no_wrap=True)
    table.add_column("n", justify="right")
    for m in result.metrics:
        arrow = {"lower": " ↓", "higher": " ↑"}.get(m.better, "")
        table.add_column(f"{m.label}{' ' + m.unit if m.unit else ''}{arrow}", justify="right")
    table.add_column("RTF", justify="right")
    for row in result.means:
        cells = [format_value(row.get(k), k) for k in [m.key for m in result.metrics] + ["rtf"]]
        table.add_row(row["label"], str(row["files"]), *cells)
    Console().print(table)
    err.print(f"CSV: {result.csv_path}\nJSON: {result.json_path}\nReport: {result.report_path}", highlight=False)


@app.command()
def bench(
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", "-c", help="Checkpoint (.pt) to measure.")] = None,
    recipe: Annotated[Optional[str], typer.Option(help="A shipped recipe's name or a recipe TOML file: measure its model with random weights (before training).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe value: section.key=value (repeatable).")] = None,
    seconds: Annotated[float, typer.Option(help="Seconds of audio per run.")] = 10.0,
    steps: Annotated[str, typer.Option(help="Comma-separated step counts.")] = "1,2,4,6",
    runs: Annotated[int, typer.Option(help="Timed runs per step count (the median is reported).")] = 3,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up runs per step count.")] = 1,
    sampler: SamplerOpt = None,
    precision: PrecisionOpt = "fp32",
    threads: ThreadsOpt = None,
    device: DeviceOpt = "auto",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the results as JSON to this file.", show_default=False)] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", **_renamed("--json", "-o/--output"))] = None,
    gain_adjust: GainAdjustOpt = None,
    refine: RefineOpt = None,
) -> None:
    """Real-time factor and peak memory of vocoding (or unconditional sampling) per step count."""
    from rich.table import Table

    from audiodiff.evaluation.bench import BenchRequest, run_bench
    from audiodiff.evaluation.evaluate import parse_steps

    output = _either(output, json_path, "-o/--output", "--json")
    if set_ and recipe is None:
        raise AudiodiffError("--set applies to --recipe only")
    if output is not None:
        check_writable(output.parent)
    request = BenchRequest(checkpoint=checkpoint, recipe=recipe, overrides=list(set_ or []),
                           steps=parse_steps(steps), seconds=seconds, runs=runs, warmup=warmup, threads=threads,
                           device=device, json_path=output, gain_adjust=gain_adjust, refine=refine,
                           precision=precision, sampler=sampler)
    doc = run_bench(request, log=_say)
    meta = doc["meta"]
    out = Console()
    out.print(f"{meta['task']} {meta['seconds']:g} s of audio · device {meta['device']} "
              f"({meta.get('gpu', meta['cpu_model'])}, {meta['nproc']} cores) · {meta['threads']} thread(s) · "
              f"{meta['precision']} · sampler {doc['results'][0]['sampler']} · torch {meta['torch_version']}\nmodel: {meta['model']}, {meta['n_params'] / 1e6:.2f} M parameters, "
              f"{meta['source']} · median of {meta['runs']} run(s) after {meta['warmup']} warm-up"
              + (f"\nmel consistency: gain adjustment {'on' if doc['results'][0]['gain_adjust'] else 'off'}, "
                 f"{doc['results'][0]['refine']} refinement iterations" if meta["task"] == "vocode" else ""),
              highlight=False)
    table = Table()
    for name in ("steps", "runs", "median s", "RTF", "x real time", "peak RSS GiB"):
        table.add_column(name, justify="right")
    cuda = any("cuda_peak_gib" in r for r in doc["results"])
    if cuda:
        table.add_column("CUDA peak GiB", justify="right")
    for r in doc["results"]:
        cells = [str(r["steps"]), str(r["runs"]), f"{r['median_s']:.2f}", f"{r['rtf']:.3f}",
                 f"{1 / r['rtf']:.1f}", f"{r['peak_rss_gib']:.2f}"]
        table.add_row(*cells, *([f"{r.get('cuda_peak_gib', 0):.2f}"] if cuda else []))
    out.print(table)
    if output:
        err.print(f"JSON: {output}", highlight=False)


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
    parsed = load_recipe(path, _recipe_overrides(set_, data))
    run_check(parsed, str(path), out=Console(), err=err, write=write_cache, show=show)


schedule_app = typer.Typer(no_args_is_help=True, help="Find few-step sampling schedules for a trained vocoder.")
app.add_typer(schedule_app, name="schedule")


@schedule_app.command("search")
def schedule_search(
    clips: Annotated[list[Path], typer.Argument(help="Held-out audio files or folders to search on (never the clips you report on).")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="Vocoder checkpoint (.pt) to search schedules for.")],
    steps: Annotated[str, typer.Option(help="Comma-separated step counts.")] = "2,3,4,6",
    metric: Annotated[str, typer.Option(help=f"What to rank schedules by: one of `audiodiff eval`'s paired metrics, {_METRIC_CHOICES} (pesq_wb and stoi need the eval extra).", metavar="METRIC", callback=_metric_option, autocompletion=_complete_metric)] = DEFAULT_METRIC,
    guard: Annotated[Optional[str], typer.Option(help=f"Comma-separated metrics, of {', '.join(METRICS)}, that a schedule must not lose on against the recipe's fast schedule (fast_betas: lmnt's 6 steps), e.g. log_mel: one that does not is chosen only if none does.", metavar="METRIC,...", callback=_guard_option, autocompletion=_complete_metric)] = None,
    budget_minutes: Annotated[float, typer.Option(help="Time budget for the whole search, shared by step count.")] = 10.0,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Checkpoint to write (default: CKPT's name + .searched.pt).", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", **_renamed("--out", "-o/--output"))] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Allow -o to be the input checkpoint.")] = False,
    default_steps: Annotated[Optional[int], typer.Option(help="Also store this as the step count vocode uses by default.")] = None,
    device: DeviceOpt = "auto",
    seed: SeedOpt = 0,
    gain_adjust: GainAdjustOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Search noise schedules per step count on held-out clips; store the best in a copy of the checkpoint."""
    from rich.table import Table

    from audiodiff.devices import set_cpu_threads
    from audiodiff.schedule_search import SearchRequest, prepare_search

    output = _either(output, out, "-o/--output", "--out")
    set_cpu_threads(threads)
    job = prepare_search(SearchRequest(checkpoint, clips, steps=steps, metric=metric,
                                       guard=guard.split(",") if guard else (), budget_minutes=budget_minutes,
                                       output=output, overwrite=overwrite, default_steps=default_steps,
                                       device=device, seed=seed, gain_adjust=gain_adjust))
    _say(job.vocoder.describe())
    _say(job.describe())
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err) as progress:
        task = progress.add_task("search", total=1.0)
        results = job.run(on_progress=lambda f, line: progress.update(task, completed=f, description=line))
    scorer = job.scorer
    table = Table(title=f"{METRICS[scorer.metric].label} ({scorer.metric}, {METRICS[scorer.metric].better} is better), "
                        f"mean over {len(job.files)} search clip(s), {job.mode}")
    bounds = scorer.bounds()
    guard_columns = [f"searched {g} (fast {bounds[g]:.4f})" for g in scorer.guard]
    for name in ("steps", "searched betas", "sampler", "searched", "default rule", "train sub-sampled", "DDIM",
                 *guard_columns, "tried"):
        table.add_column(name, justify="right" if name not in ("searched betas", "sampler") else "left")
    for r in results:
        b = r.best
        table.add_row(str(r.steps), ", ".join(f"{x:.3g}" for x in b.betas),
                      b.sampler + (f" eta {b.eta:.2f}" if b.sampler == "ddim" else ""), f"{b.score:.3f}",
                      *(f"{r.baselines[k]:.3f}" for k in ("default", "train-subsampled", "ddim")),
                      *(f"{g.score:.4f}" + ("" if g.met else " ✗") for g in b.guard),
                      str(r.evaluations))
    Console().print(table)
    if any(not r.guard_met for r in results):
        err.print("✗: worse than the fast schedule; no schedule tried at that step count met every guard, "
                  "so the best by the metric is stored")
    err.print(f"Wrote {job.target} (the default rule at 6 steps is the recipe's fast schedule, lmnt's)", highlight=False)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("steps"), TimeElapsedColumn(), console=err)


# typer >= 0.2x vendors click (typer._click), older typer uses click itself: find the
# base of usage errors by name rather than import either
_CLICK_EXCEPTION = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main() -> None:
    """Console-script entry point: run the app, turning user errors (an AudiodiffError, or
    a bad option or argument) into one line + exit 2."""
    try:
        code = app(prog_name="audiodiff", standalone_mode=False)
    except AudiodiffError as exc:
        _error(str(exc))
    except _CLICK_EXCEPTION as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group without a command: its help is printed
            sys.exit(exc.exit_code)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} -h`)" if ctx is not None and exc.exit_code == 2 else ""
        _error(f"{exc.format_message()}{hint}", exc.exit_code)
    except typer.Abort:
        err.print("Aborted.")
        sys.exit(130)
    if isinstance(code, int) and code:
        sys.exit(code)


def _error(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True)
    sys.exit(code)
