"""PriorGrad's data-dependent noise prior for vocoders (Lee et al., ICLR 2022).

Standard diffusion starts from, and adds, unit white noise everywhere. For a vocoder
the mel says how loud each frame is, so the noise can be scaled to it: in a pause
the noise the model must remove is a tenth as large, and what it fails to remove is
a tenth as loud. The network, its noise-level input and the schedule are unchanged;
only the Gaussian is N(0, diag(std^2)) with one std per mel frame:

    std[frame] = clamp(energy[frame] / prior_reference, prior_min, 1)
    energy[frame] = RMS over bands of the linear mel magnitude

Training draws eps with that std and weighs the loss by 1/std (the prior's
Mahalanobis norm, with DiffWave's L1); sampling starts from and injects noise with it.
`prior_reference` is the loud end of the data's frame energies (the 99th percentile
over training clips: `reference_energy`), a recipe value so that training and every
later vocode map a mel to the same std.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from audiodiff.audio import mel_magnitude
from audiodiff.recipe import AudioConfig, DiffusionConfig

REFERENCE_PERCENTILE = 99.0


def frame_energy(mel: torch.Tensor, audio: AudioConfig) -> torch.Tensor:
    """mel [..., n_mels, frames] in the preset's scale -> [..., frames] RMS of the linear mel."""
    return mel_magnitude(mel, audio).float().pow(2).mean(dim=-2).sqrt()


def noise_std(mel: torch.Tensor, audio: AudioConfig, diffusion: DiffusionConfig, length: int) -> torch.Tensor | None:
    """Per-sample std of the noise prior: mel [B, n_mels, frames] -> [B, 1, length] (frame
    i covers samples [i*hop, (i+1)*hop), as the conditioner's upsampling has it), or None
    under the standard prior (unit noise)."""
    if diffusion.prior != "energy":
        return None
    std = (frame_energy(mel, audio) / diffusion.prior_reference).clamp(diffusion.prior_min, 1.0)
    std = std.repeat_interleave(audio.hop_length, dim=-1)[..., :length]
    if std.shape[-1] < length:  # fewer frames than the signal needs: hold the last frame's std
        std = torch.nn.functional.pad(std, (0, length - std.shape[-1]), mode="replicate")
    return std.unsqueeze(-2)


def reference_energy(mels: Iterable[torch.Tensor], audio: AudioConfig,
                     percentile: float = REFERENCE_PERCENTILE) -> float:
    """The `percentile` of frame energies over mels [n_mels, frames]: a recipe's
    `diffusion.prior_reference`."""
    energies = np.concatenate([frame_energy(m, audio).reshape(-1).numpy() for m in mels])
    return float(np.percentile(energies, percentile))
