#!/usr/bin/env python3
"""Vocoding speed against librosa's Griffin-Lim, in one run on the same 10 s of speech.

The machine's speed drifts between days, so a vocoder's speed is stated as a ratio
against a baseline measured right beside it: Griffin-Lim (librosa, 32 iterations, the
NNLS inverse of the mel filterbank first: `evaluation.baselines.griffin_lim`, what
`audiodiff eval` scores), the shipped default vocoder at its default steps, and each
`--checkpoint` (or `--recipe`, random weights: speed does not depend on weights) at
`--steps`. All run in this process with `--threads` intra-op threads, on the mel of
the same real speech (Kathleen clips joined to `--seconds`; the shipped example
repeated where ../shared is absent). Median of `--runs` timed runs after one warm-up.

    python benchmarks/vocoder_vs_griffin_lim.py -c ~/audiodiff-runs/kathleen-frames/step-00010000.pt --steps 4

Peak memory at 60 s is `audiodiff bench -c CKPT --seconds 60` (one process per count).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


def _speech(seconds: float, sample_rate: int):
    """[samples] float32: Kathleen clips joined (or the example clip repeated) to `seconds`."""
    import numpy as np

    from audiodiff.audio import load_audio
    from audiodiff.pretrained import example_path

    root = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kathleen" / "wavs"
    files = sorted(root.glob("*.flac"))[:40] or [example_path()]
    need = int(seconds * sample_rate)
    parts, total, i = [], 0, 0
    while total < need:
        wav = load_audio(files[i % len(files)], sample_rate)
        parts.append(wav)
        total += len(wav)
        i += 1
    return np.concatenate(parts)[:need].astype(np.float32)


def _median_seconds(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--checkpoint", action="append", default=[], help="a checkpoint to measure (repeatable)")
    ap.add_argument("--recipe", action="append", default=[], help="a recipe to measure with random weights (repeatable)")
    ap.add_argument("--steps", type=int, default=4, help="steps for --checkpoint/--recipe models")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import torch

    from audiodiff.evaluation.baselines import griffin_lim
    from audiodiff.inference import Vocoder
    from audiodiff.networks import build_network
    from audiodiff.pretrained import DEFAULTS
    from audiodiff.recipe import load_recipe

    torch.set_num_threads(args.threads)
    shipped = Vocoder.from_checkpoint(DEFAULTS["vocoder"])
    audio = shipped.recipe.audio
    wav = torch.from_numpy(_speech(args.seconds, audio.sample_rate))
    mel = shipped.mel(wav)
    rows = [("griffin-lim (librosa, 32 iterations)", None,
             _median_seconds(lambda: griffin_lim(mel.numpy(), audio), args.runs))]
    rows.append((f"shipped vocoder, {shipped.plan().steps} steps (default)", None,
                 _median_seconds(lambda: shipped.vocode(mel, seed=0), args.runs)))
    models = [(str(c), Vocoder.from_checkpoint(c)) for c in args.checkpoint]
    for name in args.recipe:
        recipe = load_recipe(name, ["data.root=unused"])
        models.append((f"{name} (random weights)", Vocoder(build_network(recipe), recipe)))
    for name, vocoder in models:
        if vocoder.recipe.audio != audio:
            print(f"{name}: another mel convention than the shipped vocoder's; skipped", file=sys.stderr)
            continue
        rows.append((f"{name}, {args.steps} steps", None,
                     _median_seconds(lambda v=vocoder: v.vocode(mel, steps=args.steps, seed=0), args.runs)))
    base = rows[0][2]
    print(f"{args.seconds:g} s of speech, {args.threads} threads, median of {args.runs} runs "
          f"(torch {torch.__version__}, {os.cpu_count()} cores)")
    print("| system | seconds | RTF | time / Griffin-Lim's |")
    print("|---|---|---|---|")
    for name, _, seconds in rows:
        print(f"| {name} | {seconds:.3f} | {seconds / args.seconds:.4f} | {seconds / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
