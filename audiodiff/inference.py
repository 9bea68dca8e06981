"""The inference API: `Vocoder` (mel -> waveform) and `Generator` (noise -> sound).

    from audiodiff import Vocoder
    voc = Vocoder.from_checkpoint("runs/ljspeech/step-01000000.pt")
    wav = voc.vocode(mel, steps=6)          # mel [n_mels, frames] -> [frames * hop]
    plan = voc.plan(steps=4)                # or resolve the settings once (see sampling_plan.py)
    wav = voc.vocode(mel, plan, seed=1)

Long signals are evaluated in chunks at every sampling step: each chunk carries a
margin of the network's receptive field on both sides, so the result equals a
whole-signal pass up to float rounding while the working set stays small (and, on
CPU, cache-friendly: a 32k-sample chunk runs about twice as fast per sample as a
whole 10 s signal). The mel upsampling, which does not change between steps, is done
once per utterance and kept while it fits `CONDITION_CACHE_BYTES`; beyond that it
is recomputed per chunk, so memory stays bounded for inputs of any length.
"""
from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audiodiff.audio import MelSpectrogram, check_mel
from audiodiff.checkpoint import Checkpoint, load_checkpoint
from audiodiff.consistency import MelConsistency
from audiodiff.devices import resolve_device
from audiodiff.diffusion import Schedule
from audiodiff.errors import AudiodiffError, CheckpointError
from audiodiff.inference_defaults import InferenceDefaults
from audiodiff.memory import check_sample_memory
from audiodiff.model_info import ModelView, model_line
from audiodiff.networks import build_network
from audiodiff.precision import autocast, check_precision
from audiodiff.prior import noise_std
from audiodiff.recipe import Recipe
from audiodiff.samplers import SAMPLERS, Denoiser, Projection, StepCallback
from audiodiff.sampling_plan import Overrides, SamplingPlan, resolve_plan

CHUNK_SAMPLES = 32768
CONDITION_CACHE_BYTES = 256 * 2 ** 20
MIN_CHUNK_MARGINS = 16


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed large buffers for reuse instead of returning them to the OS.

    Each network layer allocates tensors of tens of MB; by default glibc serves them
    with mmap and unmaps them on free, so every layer of every chunk page-faults its
    buffers in again (38 million minor faults for a 60 s vocode). Raising the mmap and
    trim thresholds lets those buffers be reused from the heap; peak memory is
    unchanged since the same sizes recur. Process-wide, idempotent; a no-op (returns
    False) where glibc's mallopt is not available.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED is None:
        _MALLOC_TUNED = False
        try:
            libc = ctypes.CDLL("libc.so.6")
            m_trim_threshold, m_mmap_threshold = -1, -3
            _MALLOC_TUNED = bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(
                libc.mallopt(m_trim_threshold, 1 << 30))
        except (OSError, AttributeError):
            pass
    return _MALLOC_TUNED


_MALLOC_TUNED: bool | None = None


class Conditioner:
    """Slices of the network's conditioner (`network.condition(mel)`, [B, n_mels,
    samples / cond_hop]) for chunked evaluation: `cond(start, end)` covers samples
    [start, end).

    Conditions the whole mel once when that fits `cache_bytes`; otherwise only the
    frames a chunk needs (plus a margin of frames) each time it is asked.
    """

    FRAME_MARGIN = 4  # frames each side: covers the transposed convolutions' reach

    def __init__(self, network: nn.Module, mel: torch.Tensor, hop: int, cache_bytes: int):
        self.network, self.mel, self.hop, self.rate = network, mel, hop, network.cond_hop
        full = mel.shape[0] * mel.shape[1] * mel.shape[2] * (hop // self.rate) * 4
        self.cache = network.condition(mel) if full <= cache_bytes else None

    def __call__(self, start: int, end: int) -> torch.Tensor:
        r = self.rate
        if self.cache is not None:
            return self.cache[..., start // r:-(-end // r)]
        f0 = max(0, start // self.hop - self.FRAME_MARGIN)
        f1 = min(self.mel.shape[-1], -(-end // self.hop) + self.FRAME_MARGIN)
        up = self.network.condition(self.mel[..., f0:f1])
        first = f0 * self.hop
        return up[..., (start - first) // r:-(-(end - first) // r)]


def chunked_denoiser(network: nn.Module, cond: Callable[[int, int], torch.Tensor] | None,
                     chunk: int = CHUNK_SAMPLES) -> Denoiser:
    """A Denoiser that runs `network` over [B, 1, T] in chunks with receptive-field margins.

    Chunks and margins are whole multiples of `network.cond_hop` (a frame-level network
    sees whole frames), and a chunk is at least `MIN_CHUNK_MARGINS` margins long so the
    margins stay a small part of the work.
    """
    margin = network.receptive_margin()
    align = network.cond_hop
    chunk = max(chunk, MIN_CHUNK_MARGINS * margin)
    chunk = -(-chunk // align) * align

    def denoise(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        total = x.shape[-1]
        out = torch.empty_like(x)
        for start in range(0, total, chunk):
            end = min(start + chunk, total)
            a, b = max(0, start - margin), min(total, end + margin)
            y = network(x[..., a:b], level, None if cond is None else cond(a, b))
            out[..., start:end] = y[..., start - a:end - a]
        return out

    return denoise


@dataclass(frozen=True, eq=False)
class Guidance:
    """What a vocoder adds to sampling: the mel's conditioner (`cond(start, end)`),
    PriorGrad's noise scale [batch, 1, length] (None: unit noise) and the projection
    of each step's clean estimate (None: the network's own sampler)."""
    cond: Callable[[int, int], torch.Tensor] | None = None
    prior_std: torch.Tensor | None = None
    project: Projection = None


def noise_generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    """The generator of the sampling noise: `generator` if given, else one seeded by `seed` (None: 0)."""
    return generator if generator is not None else torch.Generator().manual_seed(0 if seed is None else seed)


@dataclass(frozen=True)
class ModelOrigin:
    """Where a model's weights came from: the file (`source`, for messages), the steps they
    were trained, and the checkpoint's inference defaults (None: none, the recipe's rule)."""
    source: str = "<memory>"
    step: int = 0
    defaults: InferenceDefaults | None = None


class _Model:
    """Shared by Vocoder and Generator: a network, its recipe and inference defaults, a
    device, and sampling by a SamplingPlan."""

    def __init__(self, network: nn.Module, recipe: Recipe, device: str | torch.device = "cpu",
                 precision: str = "fp32", origin: ModelOrigin = ModelOrigin()):
        """`origin`: where the weights came from (for messages) and their inference
        defaults (the default: weights in memory, the recipe's rule)."""
        source, step, defaults = origin.source, origin.step, origin.defaults
        self.device = resolve_device(device)
        check_precision(precision, self.device, "precision")
        self.precision = precision  # fp32, or bf16/fp16 autocast of the network (see precision.py)
        if self.device.type == "cpu":
            keep_freed_memory()
        self.network = network.to(self.device).eval()
        self.recipe = recipe
        self.source, self.step = source, step
        self.defaults = defaults or InferenceDefaults()
        self.chunk_samples = CHUNK_SAMPLES

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", ema: bool = True,
                        precision: str = "fp32"):
        """Load a checkpoint written by `audiodiff train` (EMA weights by default)."""
        return cls.from_checkpoint_data(load_checkpoint(path), str(path), device, ema, precision)

    @classmethod
    def from_checkpoint_data(cls, checkpoint: Checkpoint, source: str, device: str | torch.device = "cpu",
                             ema: bool = True, precision: str = "fp32"):
        """Build from a loaded Checkpoint (`source`: where it was read, for messages)."""
        network = build_network(checkpoint.recipe)
        if not ema and checkpoint.inference_only:
            raise CheckpointError(f"{source}: an inference-only checkpoint (audiodiff export) holds EMA weights only")
        network.load_state_dict(checkpoint.ema if ema else checkpoint.model)
        return cls(network, checkpoint.recipe, device=device, precision=precision,
                   origin=ModelOrigin(source, checkpoint.step, checkpoint.defaults))

    @property
    def sample_rate(self) -> int:
        return self.recipe.audio.sample_rate

    def describe(self, plan: SamplingPlan | None = None) -> str:
        """The 'Model: ...' line the CLI prints first: this model, its device and precision,
        `plan` if given, and where its inference defaults come from (model_info.model_line)."""
        return model_line(self.source, self.recipe, self.step, self.defaults,
                          ModelView(device=self.device, precision=self.precision, plan=plan))

    def plan(self, steps: int | None = None, sampler: str | None = None, eta: float | None = None,
             schedule: Schedule | None = None, gain_adjust: bool | None = None,
             refine: int | None = None) -> SamplingPlan:
        """The SamplingPlan these overrides (None: not given) give with this model's defaults
        and recipe; see `sampling_plan.resolve_plan` for the order. `schedule` (explicit
        betas) with `sampler` and `eta` replaces the model's own choice (schedule search)."""
        return resolve_plan(Overrides(steps, sampler, eta, schedule, gain_adjust, refine), self.defaults, self.recipe)

    def _plan(self, plan: SamplingPlan | None, overrides: dict) -> SamplingPlan:
        """A given plan, or the one the keyword overrides resolve to (not both)."""
        if plan is None:
            return self.plan(**overrides)
        if not isinstance(plan, SamplingPlan):
            raise TypeError(f"plan must be a SamplingPlan (from .plan()), got {type(plan).__name__}")
        if overrides:
            raise TypeError(f"give a plan or the overrides {', '.join(sorted(overrides))}, not both")
        return plan

    def _sample(self, plan: SamplingPlan, batch: int, length: int, generator: torch.Generator,
                on_step: StepCallback, guide: Guidance = Guidance()) -> torch.Tensor:
        """[batch, length] samples by `plan`, the starting and injected noise from `generator`."""
        noise = torch.randn(batch, 1, length, generator=generator).to(self.device)
        options = {"eta": float(plan.eta)} if plan.sampler == "ddim" else {}
        options["clip"] = float(self.recipe.diffusion.data_scale)  # the range the network's audio had
        if guide.project is not None:
            options["project"] = guide.project
        if guide.prior_std is not None:
            prior_std = guide.prior_std.to(self.device)
            noise, options["noise_scale"] = noise * prior_std, prior_std
        denoise = chunked_denoiser(self.network, guide.cond, self.chunk_samples)
        with torch.inference_mode(), autocast(self.precision, self.device):
            x = SAMPLERS[plan.sampler](denoise, plan.schedule, noise, generator, on_step=on_step, **options)
        return x[:, 0].float().cpu()


class Vocoder(_Model):
    """Mel spectrogram in, waveform out, with the mel convention of its checkpoint."""

    def __init__(self, network: nn.Module, recipe: Recipe, **kwargs):
        if not network.conditional:
            source = kwargs.get("origin", ModelOrigin("model")).source
            raise AudiodiffError(f"{source}: this is an unconditional model; "
                                 f"use Generator / `audiodiff sample`")
        super().__init__(network, recipe, **kwargs)
        self.mel_transform = MelSpectrogram(recipe.audio).to(self.device)

    @property
    def hop_length(self) -> int:
        return self.recipe.audio.hop_length

    def mel(self, wav: torch.Tensor | np.ndarray) -> torch.Tensor:
        """[samples] or [B, samples] audio at `sample_rate` -> [(B,) n_mels, frames]."""
        wav = torch.as_tensor(wav, dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            return self.mel_transform(wav)

    def vocode(self, mel: torch.Tensor | np.ndarray, plan: SamplingPlan | None = None, *,
               seed: int | None = 0, generator: torch.Generator | None = None,
               on_step: StepCallback = None, name: str = "mel", **overrides) -> torch.Tensor:
        """mel [n_mels, frames] or [B, n_mels, frames] -> waveform [frames*hop] or [B, frames*hop].

        Sampled by `plan` (from `.plan(...)`), or by the plan the keyword `overrides`
        resolve to (`steps`, `sampler`, `eta`, `schedule`, `gain_adjust`, `refine`; see
        `plan`): by default the checkpoint's step count, searched schedule and sampler,
        gain adjustment and refinement, else the recipe's rule. `seed` (or `generator`)
        fixes the noise; `name` names the mel in errors.
        """
        plan = self._plan(plan, overrides)
        mel = torch.as_tensor(mel, dtype=torch.float32)
        check_mel(mel, self.recipe.audio, name)
        batched = mel.dim() == 3
        mel = (mel if batched else mel.unsqueeze(0)).to(self.device)
        length = mel.shape[-1] * self.hop_length
        with torch.inference_mode():
            cond = Conditioner(self.network, mel, self.hop_length, CONDITION_CACHE_BYTES)
            consistency = MelConsistency(self.mel_transform, mel) if plan.gain_adjust or plan.refine else None
        std = noise_std(mel, self.recipe.audio, self.recipe.diffusion, length)
        guide = Guidance(cond, std, consistency.project if plan.gain_adjust else None)
        wav = self._sample(plan, mel.shape[0], length, noise_generator(seed, generator), on_step, guide)
        if plan.refine:
            with torch.inference_mode():
                wav = consistency.refine(wav.to(self.device), plan.refine).clamp(-1.0, 1.0).cpu()
        return wav if batched else wav[0]

    def resynthesize(self, wav: torch.Tensor | np.ndarray, plan: SamplingPlan | None = None, **kwargs) -> torch.Tensor:
        """Analysis-synthesis: audio [samples] -> its mel -> vocoded audio, same length."""
        wav = torch.as_tensor(wav, dtype=torch.float32)
        out = self.vocode(self.mel(wav).cpu(), plan, **kwargs)
        return out[..., :wav.shape[-1]]


class Generator(_Model):
    """Unconditional generation: noise in, sound out."""

    def __init__(self, network: nn.Module, recipe: Recipe, **kwargs):
        if network.conditional:
            source = kwargs.get("origin", ModelOrigin("model")).source
            raise AudiodiffError(f"{source}: this is a mel-conditioned vocoder; "
                                 f"use Vocoder / `audiodiff vocode`")
        super().__init__(network, recipe, **kwargs)

    def generate(self, seconds: float, count: int = 1, plan: SamplingPlan | None = None, *,
                 seed: int | None = 0, generator: torch.Generator | None = None,
                 on_step: StepCallback = None, **overrides) -> torch.Tensor:
        """-> [count, round(seconds * sample_rate)] waveforms of any length, sampled by
        `plan` or by the plan the keyword `overrides` (`steps`, `sampler`, `eta`,
        `schedule`) resolve to: by default the checkpoint's step count, else the
        training schedule's length. The samples are divided by the recipe's
        `diffusion.data_scale` (the scale the network was trained at)."""
        check_sample_memory(seconds, count, self.sample_rate, self.device)  # one line, before any allocation
        length = int(round(seconds * self.sample_rate))
        if length <= 0 or count <= 0:
            raise AudiodiffError("--seconds and -n must be positive")
        plan = self._plan(plan, overrides)
        samples = self._sample(plan, count, length, noise_generator(seed, generator), on_step)
        return samples / self.recipe.diffusion.data_scale


def load_model(path: str | Path, device: str | torch.device = "cpu", precision: str = "fp32") -> Vocoder | Generator:
    """A Vocoder or a Generator, whichever the checkpoint holds."""
    checkpoint = load_checkpoint(path)
    cls = Vocoder if checkpoint.recipe.model.conditional else Generator
    return cls.from_checkpoint_data(checkpoint, str(path), device, precision=precision)
