"""How much energy a vocoder's output has, per mel band, against the reference: the
shortfall that the mel gain adjustment makes up, and a sign of a network that cannot
make the fine (harmonic) structure of the upper bands.

Reads an `audiodiff eval` output folder (audio/CLIP/reference.wav beside SYSTEM.wav) and
prints, per system, the median over the loud frames (the top 40% by energy) of each clip
of output/reference energy in dB, in four groups of 20 of the 80 mel bands (0-8 kHz, the
recipe's mel), then the mean of those medians over the clips.

    python benchmarks/band_energy.py eval/kathleen-heldout-raw
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from audiodiff.audio import MelSpectrogram, load_audio, mel_magnitude
from audiodiff.recipe import load_recipe

GROUPS = 4


def band_db(reference: torch.Tensor, output: torch.Tensor, mel: MelSpectrogram) -> np.ndarray:
    """Median over the reference's loud frames of output/reference mel energy, in dB, per
    group of bands: [GROUPS]. Both signals [samples], cut to the shorter."""
    n = min(reference.shape[-1], output.shape[-1])
    with torch.no_grad():  # linear mel magnitude squared: power, [n_mels, frames]
        ref, out = (mel_magnitude(mel(x[:n]), mel.config).numpy() ** 2 for x in (reference, output))
    loud = ref.sum(0) >= np.percentile(ref.sum(0), 60)
    groups = np.array_split(np.arange(ref.shape[0]), GROUPS)
    return np.array([np.median(10 * np.log10(out[g][:, loud].sum(0) / ref[g][:, loud].sum(0))) for g in groups])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="an `audiodiff eval` output folder")
    parser.add_argument("--recipe", default="kathleen", help="whose mel to use: a shipped recipe's name or a recipe file")
    args = parser.parse_args()
    config = load_recipe(args.recipe).audio
    mel = MelSpectrogram(config)
    per_system: dict[str, list[np.ndarray]] = {}
    for clip in sorted(p for p in (args.folder / "audio").iterdir() if p.is_dir()):
        reference = torch.from_numpy(load_audio(clip / "reference.wav", config.sample_rate))
        for wav in sorted(clip.glob("*.wav")):
            if wav.stem != "reference":
                per_system.setdefault(wav.stem, []).append(band_db(reference, torch.from_numpy(load_audio(wav, config.sample_rate)), mel))
    edges = np.array_split(np.arange(config.n_mels), GROUPS)
    print(f"{args.folder}: output/reference energy, dB, loud frames, mean over clips of the median")
    print("system".ljust(22) + "".join(f"mels {e[0]:2d}-{e[-1]:2d}".rjust(12) for e in edges))
    for name, rows in per_system.items():
        print(f"{name:22s}" + "".join(f"{v:12.1f}" for v in np.mean(rows, axis=0)) + f"   ({len(rows)} clips)")


if __name__ == "__main__":
    main()
