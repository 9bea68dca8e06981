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
from audiodiff.devices import set_cpu_threads
from audiodiff.diffusion import inference_schedule
from audiodiff.inference import Vocoder
from audiodiff.schedule_search import Candidate, ClipScorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="+")
    parser.add_argument("-c", "--checkpoint", required=True)
    parser.add_argument("--firsts", default="1e-5,2e-5,3e-5,5e-5", help="betas[0] values to try at 4 steps")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    set_cpu_threads(args.threads)
    vocoder = Vocoder.from_checkpoint(args.checkpoint)
    config = vocoder.recipe.diffusion
    # the search's own scorer: one vocoding per clip and schedule (DDPM steps, seed 0), both metrics
    scorer = ClipScorer(vocoder, [load_audio(p, vocoder.sample_rate) for p in args.clips], "pesq",
                        gain_adjust=True, guard=["logmel"])
    four = [float(b) for b in inference_schedule(config, 4).betas]
    schedules = {"fast (6 steps)": list(config.fast_betas), "default rule, 4 steps": four}
    schedules.update({f"4 steps, betas[0] {float(f):g}": [float(f)] + four[1:] for f in args.firsts.split(",")})
    for name, betas in schedules.items():
        scores = scorer.score_all(Candidate(tuple(betas)))
        print(f"{name:28s} PESQ-wb {scores['pesq']:.3f}  log-mel {scores['logmel']:.4f}", flush=True)


if __name__ == "__main__":
    main()
