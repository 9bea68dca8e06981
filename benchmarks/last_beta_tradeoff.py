"""PESQ against log-mel distance as the last (least noisy) sampling step's beta moves:
the trade `audiodiff schedule search --guard logmel` exists for.

Vocodes the clips with gain adjustment (seed 0) under the recipe's fast schedule (lmnt's
6 steps), the default 4-step rule, and the 4-step rule with only its betas[0] changed,
and prints mean PESQ-wb and log-mel L1 per schedule.

    python benchmarks/last_beta_tradeoff.py -c CKPT CLIP... [--firsts 1e-5,2e-5,3e-5,5e-5] [--threads 1]
"""
from __future__ import annotations

import argparse

from audiodiff.audio import load_audio
from audiodiff.diffusion import Schedule, inference_schedule
from audiodiff.evaluation.metrics import finite_mean, log_mel_distance, pesq_wb, to_metric_rate
from audiodiff.inference import Vocoder, set_cpu_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="+")
    parser.add_argument("-c", "--checkpoint", required=True)
    parser.add_argument("--firsts", default="1e-5,2e-5,3e-5,5e-5", help="betas[0] values to try at 4 steps")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    set_cpu_threads(args.threads)
    vocoder = Vocoder.from_checkpoint(args.checkpoint)
    sr, config = vocoder.sample_rate, vocoder.recipe.diffusion
    clips = [load_audio(p, sr) for p in args.clips]
    four = [float(b) for b in inference_schedule(config, 4).betas]
    schedules = {"fast (6 steps)": list(config.fast_betas), "default rule, 4 steps": four}
    schedules.update({f"4 steps, betas[0] {float(f):g}": [float(f)] + four[1:] for f in args.firsts.split(",")})
    for name, betas in schedules.items():
        pesq, logmel = [], []
        for clip in clips:
            out = vocoder.vocode(vocoder.mel(clip).cpu(), schedule=Schedule.from_betas(betas), sampler="ddpm",
                                 seed=0, gain_adjust=True, refine=0)[:len(clip)]
            pesq.append(pesq_wb(to_metric_rate(clip, sr), to_metric_rate(out, sr)))
            logmel.append(log_mel_distance(clip, out, vocoder.recipe.audio))
        print(f"{name:28s} PESQ-wb {finite_mean(pesq):.3f}  log-mel {finite_mean(logmel):.4f}", flush=True)


if __name__ == "__main__":
    main()
