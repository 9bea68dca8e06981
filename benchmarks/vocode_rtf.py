#!/usr/bin/env python3
"""Vocoding speed and memory of audiodiff's base model (random weights) on CPU.

A thin wrapper over `audiodiff.evaluation.bench` (the code behind `audiodiff bench`):
real-time factor (RTF) = compute seconds / audio seconds, median over `--runs` timed
runs after `--warmup` untimed ones, through the public API (`Vocoder.vocode`) on a
random mel of `--seconds` of audio. Each step count runs in a fresh subprocess so its
peak RSS (ru_maxrss) is its own. Same protocol as ../shared/bench/lmnt_diffwave_rtf.py
(lmnt's DiffWave 0.1.7, base size, 10 s, 6 or 50 steps), so the two compare as a ratio.

    python benchmarks/vocode_rtf.py --steps 6,50 --runs 3 --threads 2 -o bench-results/audiodiff.json
"""
from __future__ import annotations

import argparse
import sys

from audiodiff.errors import AudiodiffError
from audiodiff.evaluation.bench import run_bench


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="6,50", help="comma list of step counts")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--recipe", default="ljspeech", help="a shipped recipe's name or a recipe file")
    ap.add_argument("--chunk", type=int, default=0, help="chunk size in samples (0: the library default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("-o", "--output", "--json", dest="output", default=None,
                    help="write the results as JSON here (--json: the old name)")
    args = ap.parse_args()
    try:
        doc = run_bench(recipe=args.recipe, steps=[int(s) for s in args.steps.split(",")], seconds=args.seconds,
                        runs=args.runs, warmup=args.warmup, threads=args.threads, device=args.device,
                        seed=args.seed, chunk=args.chunk, json_path=args.output,
                        log=lambda m: print(m, file=sys.stderr, flush=True))
    except AudiodiffError as exc:
        raise SystemExit(f"error: {exc}") from None
    meta, results = doc["meta"], doc["results"]
    print(f"\naudiodiff | torch {meta['torch_version']} | {meta['cpu_model']} | threads={meta['threads']} | "
          f"{args.seconds:g} s audio | {meta['n_params'] / 1e6:.2f} M params")
    print(f"{'steps':>5} {'runs':>4} {'median s':>9} {'RTF':>7} {'peak RSS GiB':>13}")
    for r in results:
        print(f"{r['steps']:>5} {r['runs']:>4} {r['median_s']:>9.2f} {r['rtf']:>7.3f} {r['peak_rss_gib']:>13.3f}")
    if args.output:
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
