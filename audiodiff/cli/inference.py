"""`audiodiff vocode`, `sample` and `mel`: run a model (or its mel) on the user's input."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Optional

import typer

from audiodiff.atomic import check_writable
from audiodiff.cli.app import app, err, note, progress_bar, say
from audiodiff.cli.options import (CheckpointOpt, DeviceOpt, GainAdjustOpt, PrecisionOpt, RefineOpt, SamplerOpt,
                                   SeedOpt, ThreadsOpt)
from audiodiff.errors import AudiodiffError


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
    from audiodiff.audio import output_format, save_audio
    from audiodiff.consistency import check_options
    from audiodiff.devices import set_cpu_threads
    from audiodiff.inference import Vocoder
    from audiodiff.pretrained import default_checkpoint

    files, targets = _vocode_targets(inputs, example, output, out_dir)
    check_options(gain_adjust, refine)
    set_cpu_threads(threads)
    if output is not None:
        output_format(output)
    check_writable(output.parent if output is not None else out_dir or Path("."))
    vocoder = Vocoder.from_checkpoint(checkpoint or default_checkpoint("vocoder"), device=device, precision=precision)
    plan = vocoder.plan(steps=steps, sampler=sampler, gain_adjust=gain_adjust, refine=refine)
    jobs = _read_inputs(vocoder, files, checkpoint)  # every input first: a bad one fails before any work is done
    say(vocoder.describe(plan))
    _note_inherited(plan)
    for (path, mel, length), target in zip(jobs, targets):
        with progress_bar() as progress:
            task = progress.add_task(path.name, total=plan.steps)
            wav = vocoder.vocode(mel, plan, seed=seed, name=str(path),
                                 on_step=lambda k: progress.update(task, completed=k))
        save_audio(target, wav[:length] if length else wav, vocoder.sample_rate)
        err.print(f"{path} -> {target} ({wav[:length].shape[-1] / vocoder.sample_rate:.2f} s)")


def _vocode_targets(inputs: Optional[list[Path]], example: bool, output: Optional[Path],
                    out_dir: Optional[Path]) -> tuple[list[Path], list[Path]]:
    """The input files (folders expanded, the example clip added) and the file each is
    written to; one-line errors for no input, -o with several, or clashing outputs."""
    from audiodiff.audio import AUDIO_SUFFIXES, MEL_SUFFIXES, collect_files
    from audiodiff.pretrained import example_path

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
    return files, targets


def _read_inputs(vocoder, files: Sequence[Path], checkpoint: Optional[Path]) -> list[tuple]:
    """(path, mel, length or None) for each input: a mel file checked against the vocoder's
    convention, or an audio file's own mel and its length in samples."""
    from audiodiff.audio import MEL_SUFFIXES, check_mel, load_audio, load_mel

    jobs = []
    for path in files:
        if path.suffix.lower() in MEL_SUFFIXES:
            mel = load_mel(path)
            check_mel(mel, vocoder.recipe.audio, str(path), checkpoint=None if checkpoint is None else str(checkpoint))
            jobs.append((path, mel, None))
        else:
            wav = load_audio(path, vocoder.sample_rate)
            jobs.append((path, vocoder.mel(wav).cpu(), wav.shape[-1]))
    return jobs


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
    say(generator.describe(plan))
    _note_inherited(plan)
    with progress_bar() as progress:
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
    say(vocoder.describe())
    mel = vocoder.mel(wav).cpu()
    save_mel(output, mel)
    cfg = vocoder.recipe.audio
    err.print(f"{audio} -> {output}: {list(mel.shape)} float32, values {float(mel.min()):.3g} to {float(mel.max()):.3g} "
              f"(the mel of {ckpt.name}: preset {cfg.preset}, {cfg.compression} scale, {cfg.sample_rate} Hz, "
              f"hop {cfg.hop_length})", highlight=False, markup=False, soft_wrap=True)


def _note_inherited(plan) -> None:
    """Say so when the plan's schedule was searched on a parent model's weights."""
    from audiodiff.model_info import inherited_schedule_note

    if text := inherited_schedule_note(plan):
        note(text)
