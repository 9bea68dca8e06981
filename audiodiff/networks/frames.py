"""The frame-level denoiser: ConvNeXt blocks over STFT frames, an inverse-STFT head.

A waveform denoiser with the same contract as DiffWave (noisy audio `[B, 1, T]`,
noise level `[B]`, optional mel, out: a noise estimate `[B, 1, T]`), but it works on
STFT frames framed exactly as the mel (`MelSpectrogram.stft`: frame i covers samples
`[i*hop, (i+1)*hop)`), so one network position handles `hop` samples. Per pass:

1. STFT of the noisy input, scaled so unit white noise has unit spread per bin, then
   magnitude-compressed (|z|^0.3, phase kept) to even out speech's dynamic range:
   real and imaginary parts `[B, 2 * bins, frames]`;
2. beside it the mel, brought to about zero mean and unit spread (`MEL_INPUT_NORM`);
3. a kernel-3 input convolution, then `blocks` ConvNeXt blocks (depthwise conv,
   layer norm whose scale and shift come from the noise level, pointwise MLP);
4. a head predicting log-magnitude and phase per bin (as in Vocos), and with
   `input_mask` a gain in [0, 1] per bin that passes the noisy input's STFT (divided by
   its signal level) into the estimate beside that spectrum; the inverse STFT
   (`MelSpectrogram.istft`) back to `[B, 1, T]`;
5. that waveform is the estimate of `config.target` (eps, x0 or v), turned into a
   noise estimate for the samplers (targets.py).

Each output sample depends on a bounded number of frames either side
(`receptive_margin`), so chunked inference is exact.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from audiodiff.audio import MelSpectrogram
from audiodiff.networks.conditioning import EMBED_HIDDEN, MEL_INPUT_NORM, NoiseLevelEmbedding
from audiodiff.recipe import AudioConfig, ModelConfig, Recipe
from audiodiff.targets import eps_from

INPUT_COMPRESSION = 0.3  # |z| -> |z|^0.3 on the input STFT (phase kept)
MAX_LOG_MAGNITUDE = math.log(1e3)  # output magnitudes (in unit-noise units) are clipped here
INITIAL_LOG_MAGNITUDE = -3.0  # the head starts quiet: about a twentieth of unit noise per bin


class ConvNeXtBlock(nn.Module):
    """x [B, C, N] + noise features [B, EMBED_HIDDEN] -> [B, C, N] (residual).

    Depthwise conv over frames, layer norm with a noise-level scale and shift (adaptive
    norm, zero-initialised so it starts as a plain norm), pointwise MLP, layer scale.
    """

    def __init__(self, channels: int, expansion: int, kernel: int):
        super().__init__()
        self.dwconv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.norm = nn.LayerNorm(channels, elementwise_affine=False)
        self.modulation = nn.Linear(EMBED_HIDDEN, 2 * channels)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)
        self.pwconv1 = nn.Linear(channels, expansion * channels)
        self.pwconv2 = nn.Linear(expansion * channels, channels)
        self.gamma = nn.Parameter(torch.full((channels,), 0.1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        scale, shift = self.modulation(noise).unsqueeze(1).chunk(2, dim=-1)  # [B, 1, C] each
        y = self.dwconv(x).transpose(1, 2)  # [B, N, C]
        y = self.norm(y) * (1 + scale) + shift
        y = self.pwconv2(F.gelu(self.pwconv1(y))) * self.gamma
        return x + y.transpose(1, 2)


class FrameDenoiser(nn.Module):
    """The denoiser. `forward(audio, noise_level, cond)` -> predicted noise [B, 1, T].

    `cond` is `condition(mel)` [B, n_mels, frames] (the scaled mel, one column per
    frame: `cond_hop` = hop samples) or None for an unconditional model.
    """

    def __init__(self, config: ModelConfig, audio: AudioConfig):
        super().__init__()
        self.config = config
        self.target = config.target
        self.stft = MelSpectrogram(audio)  # framing and inverse; its buffers are not saved
        self.cond_hop = audio.hop_length
        self.frame_reach = -(-audio.n_fft // audio.hop_length)  # frames a window overlaps, each way at most
        self.mel_shift, self.mel_scale = MEL_INPUT_NORM[audio.compression]
        bins = audio.n_fft // 2 + 1
        self.bins = bins
        self.unit = 1.0 / math.sqrt(float((self.stft.window ** 2).sum()))  # unit noise -> unit spread per bin
        c = config.channels
        mels = audio.n_mels if config.conditional else 0
        self.mels = mels
        self.embedding = NoiseLevelEmbedding()
        self.input_projection = nn.Conv1d(2 * bins + mels, c, 3, padding=1)
        self.blocks = nn.ModuleList(ConvNeXtBlock(c, config.expansion, config.block_kernel)
                                    for _ in range(config.blocks))
        self.final_norm = nn.LayerNorm(c)
        self.head = nn.Linear(c, 2 * bins)
        nn.init.normal_(self.head.weight, std=1e-3)
        with torch.no_grad():
            self.head.bias.zero_()
            self.head.bias[:bins] = INITIAL_LOG_MAGNITUDE
        # The network is narrower than the STFT (channels < 2 * bins), so it cannot carry the
        # input's per-bin phase through; the mask passes it around the blocks. Starts at 1/2.
        self.mask_head = nn.Linear(c, bins) if config.input_mask else None
        if self.mask_head is not None:
            nn.init.normal_(self.mask_head.weight, std=1e-3)
            nn.init.zeros_(self.mask_head.bias)

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> FrameDenoiser:
        return cls(recipe.model, recipe.audio)

    @property
    def conditional(self) -> bool:
        return self.mels > 0

    def receptive_margin(self) -> int:
        """Samples each side of an output sample that it depends on (one network pass),
        a whole number of frames: the STFT's reach, the convolutions', the inverse STFT's."""
        conv = 1 + len(self.blocks) * (self.config.block_kernel // 2)
        return (conv + 2 * self.frame_reach + 1) * self.cond_hop

    def condition(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, frames] -> the scaled mel [B, n_mels, frames] the network reads."""
        if not self.conditional:
            raise ValueError("this model is unconditional: it takes no mel")
        return (mel - self.mel_shift) / self.mel_scale

    def _features(self, spec: torch.Tensor) -> torch.Tensor:
        """The input's STFT [B, bins, frames] -> compressed real/imag features [B, 2 * bins, frames]."""
        spec = spec * self.unit
        spec = spec * spec.abs().clamp(min=1e-4).pow(INPUT_COMPRESSION - 1)
        return torch.cat([spec.real, spec.imag], dim=1)

    def forward(self, audio: torch.Tensor, noise_level: torch.Tensor,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditional and cond is None:
            raise ValueError("a conditional model needs `cond` (from condition(mel))")
        noisy_spec = self.stft.stft(audio[:, 0].float())  # [B, bins, frames]
        x = self._features(noisy_spec)
        if self.conditional:
            frames = x.shape[-1]
            if cond.shape[-1] != frames:
                raise ValueError(f"cond has {cond.shape[-1]} frames, the audio {frames}")
            x = torch.cat([x, cond.to(x.dtype)], dim=1)
        x = self.input_projection(x)
        noise = self.embedding(noise_level)
        for block in self.blocks:
            x = block(x, noise)
        features = self.final_norm(x.transpose(1, 2))  # [B, N, C]
        log_mag, phase = self.head(features).transpose(1, 2).float().split(self.bins, dim=1)  # [B, bins, N] each
        mag = torch.exp(log_mag.clamp(max=MAX_LOG_MAGNITUDE)) / self.unit
        spec = torch.polar(mag, phase)
        if self.mask_head is not None:
            gain = torch.sigmoid(self.mask_head(features).transpose(1, 2).float())  # [B, bins, N]
            spec = spec + gain * noisy_spec / noise_level.float().view(-1, 1, 1)
        out = self.stft.istft(spec, audio.shape[-1]).unsqueeze(1)  # [B, 1, T]
        return eps_from(out, audio.float(), noise_level.float().view(-1, 1, 1), self.target).to(audio.dtype)
