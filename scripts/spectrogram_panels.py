"""Stacked linear-frequency spectrograms of a few audio files over the same excerpt, to see
fine structure (the harmonics of voiced speech) that mel images blur.

    python scripts/spectrogram_panels.py eval/kathleen-heldout/audio/CLIP/reference.wav \
        eval/kathleen-heldout/audio/CLIP/steps-6.wav --labels reference "6 steps" \
        --start 0.8 --seconds 0.8 --fmax 4000 -o docs/default-models/vocoder-harmonics.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend
import numpy as np  # noqa: E402
import torch  # noqa: E402

from audiodiff.audio import load_audio  # noqa: E402

N_FFT, HOP = 1024, 128


def spectrogram_db(wav: np.ndarray) -> np.ndarray:
    """|STFT| in dB re 1 (Hann 1024, hop 128): [N_FFT // 2 + 1, frames]."""
    spec = torch.stft(torch.from_numpy(wav), N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    return 20 * np.log10(spec.abs().numpy() + 1e-6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--labels", nargs="+", help="one title per file (default: the file names)")
    parser.add_argument("--rate", type=int, default=22050)
    parser.add_argument("--start", type=float, default=0.0, help="seconds")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--fmax", type=float, default=4000.0, help="Hz shown")
    parser.add_argument("-o", "--output", "--out", dest="output", type=Path, required=True)
    args = parser.parse_args()
    labels = args.labels or [str(f) for f in args.files]
    if len(labels) != len(args.files):
        parser.error("give one label per file")
    a, b = int(args.start * args.rate), int((args.start + args.seconds) * args.rate)
    specs = [spectrogram_db(load_audio(f, args.rate)[a:b]) for f in args.files]
    top = specs[0].max()
    bins = int(args.fmax / (args.rate / N_FFT)) + 1
    fig, axes = plt.subplots(len(specs), 1, figsize=(8, 1.9 * len(specs)), sharex=True, squeeze=False)
    for ax, spec, label in zip(axes[:, 0], specs, labels):
        ax.imshow(spec[:bins], origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                  extent=(args.start, args.start + spec.shape[1] * HOP / args.rate, 0, args.fmax / 1000))
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("kHz")
    axes[-1, 0].set_xlabel("s")
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=64)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
