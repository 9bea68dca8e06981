#!/usr/bin/env python3
"""What one denoiser pass recovers at each noise level: does the network use its input?

For each held-out clip and each signal level `a` (x_t = a * x0 + sqrt(1 - a^2) * eps),
one pass of the vocoder's network gives a clean estimate x0_hat; it is scored against
x0 by PESQ-wb and the log-mel distance, beside the noisy input itself (x_t / a). A
denoiser that uses its input scores higher as the noise falls; one whose scores stay
flat from the noisiest level to the cleanest is a mel-to-waveform regression that
ignores the input, and then its sampler's steps add nothing.

    python benchmarks/denoise_by_level.py -c in-progress/kathleen-frames-step3728.pt

Clips: the run's split.json (`--split`, the report clips validation[5:]), the first
`--clips` of them. Seeded: the same noise for every checkpoint.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

LEVELS = (0.99995, 0.9995, 0.995, 0.95, 0.8, 0.6)  # noise std 0.01 ... 0.8
REPORT_FIRST = 5  # the split's first 5 validation clips are for schedule search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--checkpoint", required=True, help="a vocoder checkpoint or export")
    parser.add_argument("--split", type=Path, default=Path.home() / "audiodiff-runs" / "kathleen-frames" / "split.json",
                        help="a run's split.json (its report clips are scored)")
    parser.add_argument("--clips", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import numpy as np
    import torch

    from audiodiff.audio import load_audio
    from audiodiff.evaluation.metrics import log_mel_distance, pesq_wb, to_metric_rate
    from audiodiff.inference import load_model
    from audiodiff.targets import target_from_eps

    torch.set_num_threads(args.threads)
    vocoder = load_model(args.checkpoint)
    net, audio = vocoder.network, vocoder.recipe.audio
    clips = json.loads(args.split.read_text())["validation"][REPORT_FIRST:REPORT_FIRST + args.clips]
    print(f"{args.checkpoint}: {len(clips)} clips\n")
    print("| signal level | noise std | x0_hat PESQ-wb | x0_hat log-mel | input PESQ-wb |")
    print("|---|---|---|---|---|")
    for level in LEVELS:
        std = (1 - level ** 2) ** 0.5
        generator = torch.Generator().manual_seed(0)
        scores = []
        for clip in clips:
            x0 = torch.as_tensor(load_audio(clip, audio.sample_rate), dtype=torch.float32)
            x0 = x0[: x0.shape[-1] // audio.hop_length * audio.hop_length].view(1, 1, -1)
            noisy = level * x0 + std * torch.randn(x0.shape, generator=generator)
            levels = torch.full((1,), level)
            with torch.inference_mode():
                eps = net(noisy, levels, net.condition(vocoder.mel(x0[0, 0])[None]))
            estimate = target_from_eps(eps, noisy, levels.view(-1, 1, 1), "x0")
            ref = to_metric_rate(x0[0, 0].numpy(), audio.sample_rate)
            scores.append((pesq_wb(ref, to_metric_rate(estimate[0, 0].numpy(), audio.sample_rate)),
                           log_mel_distance(x0[0, 0], estimate[0, 0], audio),
                           pesq_wb(ref, to_metric_rate((noisy / level)[0, 0].numpy(), audio.sample_rate))))
        pesq, mel, given = np.mean(scores, axis=0)
        print(f"| {level} | {std:.3f} | {pesq:.3f} | {mel:.3f} | {given:.3f} |", flush=True)


if __name__ == "__main__":
    main()
