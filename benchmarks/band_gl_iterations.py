"""Band-gain Griffin-Lim from white noise (no network) at several iteration counts,
scored like `audiodiff eval` on the same clips: what `--refine N` is worth on its own.

A vocoder's output refined with N iterations (`vocode --refine N`) should be compared
with this at about N + steps iterations (the same number of projections) and at the
iterations that take as long as the network's steps (one 12 x 32 network step on 10 s
costs about 100 iterations on 2 CPU cores; see the README).

    python benchmarks/band_gl_iterations.py -c CKPT CLIP... [--iters 66,128,256] [--threads 1]

Prints one row per iteration count: mean log-mel L1, MR-STFT, MCD, PESQ-wb, STOI,
V/UV error over the clips, computed as eval computes its "Griffin-Lim, band gains" row (seed 0,
the clip's full length: `--iters 32` gives that row), and the seconds per 10 s of audio
the iterations took.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from audiodiff.audio import load_audio
from audiodiff.devices import set_cpu_threads
from audiodiff.evaluation.baselines import band_griffin_lim
from audiodiff.evaluation.metrics import PairScorer
from audiodiff.inference import Vocoder

METRICS = ("log_mel", "mr_stft", "mcd_db", "pesq_wb", "stoi", "vuv_error")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--checkpoint", required=True, help="a vocoder checkpoint: its mel settings")
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--iters", default="66,128,256")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    set_cpu_threads(args.threads)
    voc = Vocoder.from_checkpoint(args.checkpoint)
    cfg = voc.recipe.audio
    iters = [int(n) for n in args.iters.split(",")]
    scores = {n: [] for n in iters}
    seconds = {n: 0.0 for n in iters}
    audio = 0.0
    for clip in args.clips:
        wav = load_audio(clip, cfg.sample_rate)
        audio += len(wav) / cfg.sample_rate
        mel = voc.mel(wav).cpu()
        scorer = PairScorer(wav, cfg.sample_rate, cfg)
        for n in iters:
            start = time.perf_counter()
            out = band_griffin_lim(mel, cfg, len(wav), n_iter=n, transform=voc.mel_transform)
            seconds[n] += time.perf_counter() - start
            scores[n].append(scorer.score(out))
    print(f"{len(args.clips)} clips, {audio:.1f} s; band-gain Griffin-Lim from noise (seed 0)")
    print("iters  " + "  ".join(f"{m:>9s}" for m in METRICS) + "  s per 10 s")
    for n in iters:
        means = [np.mean([s[m] for s in scores[n]]) for m in METRICS]
        print(f"{n:5d}  " + "  ".join(f"{v:9.3f}" for v in means) + f"  {10 * seconds[n] / audio:10.2f}")


if __name__ == "__main__":
    main()
