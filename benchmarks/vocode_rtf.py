#!/usr/bin/env python3
"""Vocoding speed and memory of audiodiff's base model (random weights) on CPU.

Real-time factor (RTF) = compute seconds / audio seconds, median over `--runs` timed
runs after `--warmup` untimed ones, through the public API (`Vocoder.vocode`) on a
random mel of `--seconds` of audio. Each step count runs in a fresh subprocess so its
peak RSS (ru_maxrss) is its own. Same protocol as ../shared/bench/lmnt_diffwave_rtf.py
(lmnt's DiffWave 0.1.7, base size, 10 s, 6 or 50 steps), so the two compare as a ratio.

    python benchmarks/vocode_rtf.py --steps 6,50 --runs 3 --threads 2 --json bench-results/audiodiff.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from audiodiff.inference import Vocoder
    from audiodiff.model import DiffWave
    from audiodiff.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    torch.manual_seed(args.seed)
    network = DiffWave.from_recipe(recipe)
    torch.nn.init.normal_(network.output_projection.weight, std=0.01)  # non-trivial output
    vocoder = Vocoder(network, recipe, device="cpu")
    if args.chunk:
        vocoder.chunk_samples = args.chunk
    sr, hop = recipe.audio.sample_rate, recipe.audio.hop_length
    frames = -(-int(args.seconds * sr) // hop)
    g = torch.Generator().manual_seed(args.seed + 1)
    mel = torch.rand(recipe.audio.n_mels, frames, generator=g) * 10 - 9  # a plausible ln-mel range
    times = []
    for i in range(args.warmup + args.runs):
        t0 = time.perf_counter()
        wav = vocoder.vocode(mel, steps=args.steps, seed=i)
        dt = time.perf_counter() - t0
        print(f"  [steps={args.steps}] {'warmup' if i < args.warmup else 'run'} {i}: {dt:.2f} s",
              file=sys.stderr, flush=True)
        if i >= args.warmup:
            times.append(dt)
    audio_s = wav.shape[-1] / sr
    med = statistics.median(times)
    result = dict(steps=args.steps, threads=args.threads, runs=args.runs, times_s=[round(t, 3) for t in times],
                  median_s=round(med, 3), audio_seconds=round(audio_s, 3), rtf=round(med / audio_s, 4),
                  peak_rss_gib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 3),
                  chunk_samples=vocoder.chunk_samples, output_samples=int(wav.shape[-1]),
                  output_finite=bool(torch.isfinite(wav).all()),
                  n_params=sum(p.numel() for p in network.parameters()))
    print("RESULT_JSON " + json.dumps(result), flush=True)


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def parent(args: argparse.Namespace) -> None:
    import torch

    results = []
    for steps in [int(s) for s in args.steps.split(",")]:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--steps", str(steps),
               "--threads", str(args.threads), "--runs", str(args.runs), "--warmup", str(args.warmup),
               "--seconds", str(args.seconds), "--recipe", args.recipe, "--seed", str(args.seed),
               "--chunk", str(args.chunk)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if proc.returncode:
            raise SystemExit(f"child failed for steps={steps} (exit {proc.returncode})")
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT_JSON ")][-1]
        results.append(json.loads(line.split(" ", 1)[1]))
    meta = dict(package="audiodiff", torch_version=torch.__version__, python=platform.python_version(),
                cpu_model=cpu_model(), nproc=os.cpu_count(), threads=args.threads, recipe=args.recipe,
                timestamp=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    print(f"\naudiodiff | torch {meta['torch_version']} | {meta['cpu_model']} | threads={args.threads} | "
          f"{args.seconds:g} s audio | {results[0]['n_params'] / 1e6:.2f} M params")
    print(f"{'steps':>5} {'runs':>4} {'median s':>9} {'RTF':>7} {'peak RSS GiB':>13}")
    for r in results:
        print(f"{r['steps']:>5} {r['runs']:>4} {r['median_s']:>9.2f} {r['rtf']:>7.3f} {r['peak_rss_gib']:>13.3f}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, results=results), f, indent=2)
        print(f"wrote {args.json}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="6,50", help="comma list of step counts")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--recipe", default=os.path.join(os.path.dirname(__file__), "..", "recipes", "ljspeech.toml"))
    ap.add_argument("--chunk", type=int, default=0, help="chunk size in samples (0: the library default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.steps = int(args.steps)
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
