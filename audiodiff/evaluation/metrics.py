"""Distances between a reference waveform and a generated one."""
from __future__ import annotations

import dataclasses

import torch

from audiodiff.audio import MelSpectrogram
from audiodiff.recipe import AudioConfig


def log_mel_distance(reference: torch.Tensor, estimate: torch.Tensor, config: AudioConfig) -> float:
    """Mean |ln mel(reference) - ln mel(estimate)| over bands and frames (lower is better).

    Uses the model's mel settings with natural-log compression whatever its preset, so
    the number reads the same for every recipe. Inputs [samples]; the longer is trimmed.
    """
    n = min(reference.shape[-1], estimate.shape[-1])
    mel = MelSpectrogram(dataclasses.replace(config, compression="ln"))
    with torch.no_grad():
        a = mel(torch.as_tensor(reference[..., :n], dtype=torch.float32).cpu())
        b = mel(torch.as_tensor(estimate[..., :n], dtype=torch.float32).cpu())
    return float((a - b).abs().mean())
