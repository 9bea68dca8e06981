"""What every network family shares: the noise-level embedding and the mel's input scaling.

Shapes: noise level `[batch]` in (0, 1] -> features `[batch, EMBED_HIDDEN]`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

EMBED_DIM = 128
EMBED_HIDDEN = 512
NOISE_LEVEL_SCALE = 5000.0  # WaveGrad: positional encoding of 5000 * noise level
#: (shift, scale) bringing each mel compression to about zero mean, unit spread before
#: the conditioner: ln-magnitude mels of speech sit around -5 with a spread of about 2
#: (floor ln(1e-5) = -11.5); lmnt's [0, 1] dB mels are used as lmnt uses them.
MEL_INPUT_NORM = {"ln": (-5.0, 2.0), "db_unit": (0.0, 1.0)}


class NoiseLevelEmbedding(nn.Module):
    """[batch] noise levels in (0, 1] -> [batch, 512] features (sinusoids, then an MLP)."""

    def __init__(self) -> None:
        super().__init__()
        half = EMBED_DIM // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.projection1 = nn.Linear(EMBED_DIM, EMBED_HIDDEN)
        self.projection2 = nn.Linear(EMBED_HIDDEN, EMBED_HIDDEN)

    def forward(self, noise_level: torch.Tensor) -> torch.Tensor:
        phase = NOISE_LEVEL_SCALE * noise_level.float().unsqueeze(1) * self.freqs
        x = torch.cat([torch.sin(phase), torch.cos(phase)], dim=1)
        x = F.silu(self.projection1(x))
        return F.silu(self.projection2(x))
