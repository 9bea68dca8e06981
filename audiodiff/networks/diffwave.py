"""DiffWave (Kong et al. 2021) conditioned on a continuous noise level.

The network predicts the noise `eps` in `x_t = level * x_0 + sqrt(1 - level^2) * eps`,
where `level = sqrt(alpha_bar)` is a real number in (0, 1] (as in WaveGrad), not an
integer step: any inference schedule can be used with one trained network.

Shapes: audio `[batch, 1, samples]`, noise level `[batch]`, mel
`[batch, n_mels, frames]`, upsampled conditioner `[batch, n_mels, samples]` with
`samples = frames * hop_length`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from audiodiff.networks.conditioning import EMBED_HIDDEN, MEL_INPUT_NORM, NoiseLevelEmbedding
from audiodiff.recipe import ModelConfig, Recipe, prime_factors

MAX_STRIDE = 16


def upsample_strides(hop_length: int) -> list[int]:
    """Factor `hop_length` into few strides of at most 16 (first-fit decreasing).

    256 -> [16, 16]; 300 -> [15, 10, 2]; 200 -> [10, 10, 2] ... the product is always hop_length.
    """
    strides: list[int] = []
    for p in sorted(prime_factors(hop_length), reverse=True):
        if p > MAX_STRIDE:
            raise ValueError(f"hop_length {hop_length} has prime factor {p} > {MAX_STRIDE}")
        for i, s in enumerate(strides):
            if s * p <= MAX_STRIDE:
                strides[i] = s * p
                break
        else:
            strides.append(p)
    return sorted(strides, reverse=True) or [1]


def _init_linear_interpolation(stage: nn.ConvTranspose2d) -> None:
    """Start a stage as linear interpolation in time, identity across mel bins.

    With a random start the upsampled conditioner is a small, stride-periodic pattern
    that training shrinks further, and the network learns to ignore the mel (seen:
    identical output for a mel 17 dB quieter after 1000 steps on one clip). A
    triangular kernel centred on each frame's block passes the mel through from step 0.
    """
    s = stage.stride[1]
    k = stage.kernel_size[1]
    centre = s // 2 + (s - 1) / 2  # kernel index that lands on the middle of the frame's block
    taps = torch.clamp(1 - (torch.arange(k, dtype=torch.float32) - centre).abs() / s, min=0)
    with torch.no_grad():
        stage.weight.zero_()
        stage.weight[0, 0, 1] = taps
        stage.bias.zero_()


class MelUpsampler(nn.Module):
    """[batch, n_mels, frames] -> [batch, n_mels, frames * hop] with transposed 2-D convs.

    One stage per stride (lmnt's design generalised from 16 x 16 to any hop): a 3-bin
    by 2*stride-sample kernel, leaky ReLU 0.4. Kernel and padding are chosen so each
    stage multiplies the length by exactly its stride.
    """

    def __init__(self, hop_length: int):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.ConvTranspose2d(1, 1, (3, 2 * s - s % 2), stride=(1, s), padding=(1, s // 2))
            for s in upsample_strides(hop_length))
        for stage in self.stages:
            _init_linear_interpolation(stage)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel.unsqueeze(1)
        for stage in self.stages:
            x = F.leaky_relu(stage(x), 0.4)
        return x.squeeze(1)


def _gated(gate: torch.Tensor, filt: torch.Tensor) -> torch.Tensor:
    """sigmoid(gate) * tanh(filt); in place when no gradient is being recorded."""
    if torch.is_grad_enabled():
        return torch.sigmoid(gate) * torch.tanh(filt)
    return torch.sigmoid(gate).mul_(torch.tanh(filt))


class ResidualBlock(nn.Module):
    """Dilated conv + noise-level bias + conditioner, gated tanh/sigmoid unit, residual and skip."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, n_mels: int | None):
        super().__init__()
        self.dilated_conv = nn.Conv1d(channels, 2 * channels, kernel_size,
                                      padding=dilation * (kernel_size - 1) // 2, dilation=dilation)
        nn.init.kaiming_normal_(self.dilated_conv.weight)
        self.noise_projection = nn.Linear(EMBED_HIDDEN, channels)
        self.conditioner_projection = None
        if n_mels is not None:
            self.conditioner_projection = nn.Conv1d(n_mels, 2 * channels, 1)
            nn.init.kaiming_normal_(self.conditioner_projection.weight)
        self.output_projection = nn.Conv1d(channels, 2 * channels, 1)
        nn.init.kaiming_normal_(self.output_projection.weight)

    def forward(self, x: torch.Tensor, noise: torch.Tensor,
                cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, T], noise [B, 512], cond [B, n_mels, T] -> (residual out, skip), both [B, C, T]."""
        y = self.dilated_conv(x + self.noise_projection(noise).unsqueeze(-1))
        if self.conditioner_projection is not None:
            y += self.conditioner_projection(cond)  # in place: conv does not keep its output
        gate, filt = y.chunk(2, dim=1)
        y = self.output_projection(_gated(gate, filt))
        residual, skip = y.chunk(2, dim=1)
        return torch.add(x, residual).mul_(1 / math.sqrt(2.0)), skip


class DiffWave(nn.Module):
    """The denoiser. `forward(audio, noise_level, cond)` -> predicted noise [B, 1, T].

    For vocoding, `cond` is `condition(mel)`, computed once per utterance and reused
    by every sampling step; unconditional models (`config.conditional = False`) take
    `cond=None`.
    """

    #: samples per column of `condition(mel)`: the conditioner is upsampled to the audio rate
    cond_hop = 1

    def __init__(self, config: ModelConfig, n_mels: int, hop_length: int, mel_compression: str = "ln"):
        super().__init__()
        self.config = config
        self.mel_shift, self.mel_scale = MEL_INPUT_NORM[mel_compression]
        c = config.residual_channels
        self.input_projection = nn.Conv1d(1, c, 1)
        nn.init.kaiming_normal_(self.input_projection.weight)
        self.embedding = NoiseLevelEmbedding()
        self.upsampler = MelUpsampler(hop_length) if config.conditional else None
        self.layers = nn.ModuleList(
            ResidualBlock(c, config.kernel_size, 2 ** (i % config.dilation_cycle),
                          n_mels if config.conditional else None)
            for i in range(config.residual_layers))
        self.skip_projection = nn.Conv1d(c, c, 1)
        nn.init.kaiming_normal_(self.skip_projection.weight)
        self.output_projection = nn.Conv1d(c, 1, 1)
        nn.init.zeros_(self.output_projection.weight)
        nn.init.zeros_(self.output_projection.bias)

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> DiffWave:
        return cls(recipe.model, recipe.audio.n_mels, recipe.audio.hop_length, recipe.audio.compression)

    @property
    def conditional(self) -> bool:
        return self.upsampler is not None

    def receptive_margin(self) -> int:
        """Samples each side of an output sample that it depends on (one network pass)."""
        k = self.config.kernel_size
        return sum(layer.dilated_conv.dilation[0] * (k - 1) // 2 for layer in self.layers)

    def condition(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, frames] -> upsampled conditioner [B, n_mels, frames * hop].

        The mel is first brought to roughly zero mean and unit spread (`MEL_INPUT_NORM`).
        """
        if self.upsampler is None:
            raise ValueError("this model is unconditional: it takes no mel")
        return self.upsampler((mel - self.mel_shift) / self.mel_scale)

    def forward(self, audio: torch.Tensor, noise_level: torch.Tensor,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditional and cond is None:
            raise ValueError("a conditional model needs `cond` (from condition(mel))")
        x = F.relu(self.input_projection(audio))
        noise = self.embedding(noise_level)
        skip = torch.zeros_like(x)
        for layer in self.layers:
            x, s = layer(x, noise, cond)
            skip.add_(s)
        x = F.relu(self.skip_projection(skip.mul_(1 / math.sqrt(len(self.layers)))), inplace=True)
        return self.output_projection(x)
