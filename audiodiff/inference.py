"""The inference API: `Vocoder` (mel -> waveform) and `Generator` (noise -> sound).

    from audiodiff import Vocoder
    voc = Vocoder.from_checkpoint("runs/ljspeech/step-01000000.pt")
    wav = voc.vocode(mel, steps=6)          # mel [n_mels, frames] -> [frames * hop]

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
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audiodiff.audio import MelSpectrogram, check_mel
from audiodiff.checkpoint import load_checkpoint
from audiodiff.consistency import MelConsistency
from audiodiff.devices import resolve_device
from audiodiff.diffusion import Schedule, inference_schedule, training_schedule
from audiodiff.errors import AudiodiffError, CheckpointError
from audiodiff.networks import build_network
from audiodiff.precision import autocast, check_precision
from audiodiff.prior import noise_std
from audiodiff.recipe import Recipe
from audiodiff.samplers import SAMPLERS, Denoiser, Projection, StepCallback
from audiodiff.searched_schedule import SearchedSchedule

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


def _check_sampler(name: str) -> None:
    if name not in SAMPLERS:
        raise AudiodiffError(f"unknown sampler {name!r} (known: {', '.join(SAMPLERS)})")


class _Model:
    """Shared by Vocoder and Generator: a network, its recipe, a device, sampling."""

    def __init__(self, network: nn.Module, recipe: Recipe, device: str | torch.device = "cpu",
                 step: int = 0, source: str = "<memory>",
                 searched: dict[int, SearchedSchedule] | None = None, default_steps: int | None = None,
                 precision: str = "fp32", default_refine: int | None = None,
                 default_gain_adjust: bool | None = None):
        self.device = resolve_device(device)
        check_precision(precision, self.device, "precision")
        self.precision = precision  # fp32, or bf16/fp16 autocast of the network (see precision.py)
        if self.device.type == "cpu":
            keep_freed_memory()
        self.network = network.to(self.device).eval()
        self.recipe = recipe
        self.step = step
        self.source = source
        self.searched = dict(searched or {})
        self._default_steps = default_steps
        self.default_refine = default_refine or 0  # mel-consistency iterations after sampling (Vocoder)
        self.default_gain_adjust = bool(default_gain_adjust)  # gain adjustment at each step (Vocoder)
        self.chunk_samples = CHUNK_SAMPLES

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", ema: bool = True,
                        precision: str = "fp32"):
        """Load a checkpoint written by `audiodiff train` (EMA weights by default)."""
        return cls.from_checkpoint_data(load_checkpoint(path), str(path), device, ema, precision)

    @classmethod
    def from_checkpoint_data(cls, data: dict, source: str, device: str | torch.device = "cpu",
                             ema: bool = True, precision: str = "fp32"):
        """Build from what `checkpoint.load_checkpoint` returned."""
        recipe = data["recipe_obj"]
        network = build_network(recipe)
        if not ema and not data["model"]:
            raise CheckpointError(f"{source}: an inference-only checkpoint (audiodiff export) holds EMA weights only")
        network.load_state_dict(data["ema" if ema else "model"])
        return cls(network, recipe, device=device, step=data["step"], source=source,
                   searched=data.get("schedules_obj"), default_steps=data.get("default_steps"),
                   precision=precision, default_refine=data.get("default_refine"),
                   default_gain_adjust=data.get("default_gain_adjust"))

    @property
    def sample_rate(self) -> int:
        return self.recipe.audio.sample_rate

    def schedule(self, steps: int) -> Schedule:
        """The noise schedule used for `steps` network evaluations: the searched one
        stored in the checkpoint if there is one, else the recipe's default rule."""
        found = self.searched.get(steps)
        return found.schedule if found else inference_schedule(self.recipe.diffusion, steps)

    def sampling(self, steps: int, sampler: str | None = None) -> tuple[Schedule, str, float]:
        """(schedule, sampler, eta) for `steps` evaluations. `sampler` None takes the
        searched schedule's sampler and eta (else 'ddpm'); naming one keeps the searched
        betas but uses that sampler (ddim with eta 0 unless the search chose ddim)."""
        found = self.searched.get(steps)
        if sampler is None:
            sampler = found.sampler if found else "ddpm"
        _check_sampler(sampler)
        eta = found.eta if found and found.sampler == sampler else 0.0
        return self.schedule(steps), sampler, eta

    def describe_sampling(self, steps: int, sampler: str | None = None) -> str:
        """One line for the CLI: which schedule and sampler `steps` evaluations use."""
        _, name, eta = self.sampling(steps, sampler)
        found = self.searched.get(steps)
        how = f"searched schedule ({found.describe_score()})" if found else "default schedule"
        return f"{steps} steps, {how}, {name}" + (f" eta {eta:g}" if name == "ddim" else "")

    def _sample(self, cond, batch: int, length: int, steps: int, sampler: str | None, seed: int | None,
                generator: torch.Generator | None, on_step: StepCallback,
                schedule: Schedule | None = None, eta: float | None = None,
                prior_std: torch.Tensor | None = None, project: Projection = None) -> torch.Tensor:
        """[batch, length] samples. An explicit `schedule` (with `sampler` and `eta`)
        overrides the model's own choice for `steps` (the schedule search uses this).
        `prior_std` [batch, 1, length] scales the starting and injected noise (PriorGrad);
        `project` corrects each step's clean estimate (see samplers.ddpm)."""
        if schedule is None:
            schedule, sampler, found_eta = self.sampling(steps, sampler)
            eta = found_eta if eta is None else eta
        else:
            _check_sampler(sampler)
        if generator is None:
            generator = torch.Generator().manual_seed(0 if seed is None else seed)
        noise = torch.randn(batch, 1, length, generator=generator).to(self.device)
        options = {"eta": float(eta or 0.0)} if sampler == "ddim" else {}
        if project is not None:
            options["project"] = project
        if prior_std is not None:
            prior_std = prior_std.to(self.device)
            noise, options["noise_scale"] = noise * prior_std, prior_std
        denoise = chunked_denoiser(self.network, cond, self.chunk_samples)
        with torch.inference_mode(), autocast(self.precision, self.device):
            x = SAMPLERS[sampler](denoise, schedule, noise, generator, on_step=on_step, **options)
        return x[:, 0].float().cpu()


class Vocoder(_Model):
    """Mel spectrogram in, waveform out, with the mel convention of its checkpoint."""

    def __init__(self, network: nn.Module, recipe: Recipe, **kwargs):
        if not network.conditional:
            raise AudiodiffError(f"{kwargs.get('source', 'model')}: this is an unconditional model; "
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

    @property
    def default_steps(self) -> int:
        """The step count `vocode` uses when none is given: the checkpoint's choice
        (set by `audiodiff schedule search --default-steps`), else the recipe's fast
        schedule's length (`diffusion.fast_steps`, 6 in the shipped recipes)."""
        return self._default_steps or self.recipe.diffusion.fast_steps

    def vocode(self, mel: torch.Tensor | np.ndarray, steps: int | None = None, sampler: str | None = None,
               seed: int | None = 0, generator: torch.Generator | None = None,
               on_step: StepCallback = None, name: str = "mel",
               schedule: Schedule | None = None, eta: float | None = None,
               gain_adjust: bool | None = None, refine: int | None = None) -> torch.Tensor:
        """mel [n_mels, frames] or [B, n_mels, frames] -> waveform [frames*hop] or [B, frames*hop].

        `steps` network evaluations (default `default_steps`) with the checkpoint's
        searched schedule for that count if it has one, else the default rule (the
        recipe's fast_betas at their own count; 50: the full training schedule); `sampler` 'ddpm' or
        'ddim' (default: the searched one, else ddpm); `seed` (or `generator`) fixes
        the noise. `schedule`, `sampler` and `eta` together override all of that.
        `gain_adjust` matches each step's clean estimate to the mel (WaveFit's gain
        adjustment); `refine` fast Griffin-Lim iterations with the same projection run
        after sampling. Both default to the checkpoint's settings (`default_gain_adjust`,
        `default_refine`), else off. See consistency.py.
        """
        steps = len(schedule) if schedule is not None else (steps or self.default_steps)
        gain_adjust, refine = self.consistency_settings(gain_adjust, refine)
        mel = torch.as_tensor(mel, dtype=torch.float32)
        check_mel(mel, self.recipe.audio, name)
        batched = mel.dim() == 3
        mel = (mel if batched else mel.unsqueeze(0)).to(self.device)
        length = mel.shape[-1] * self.hop_length
        with torch.inference_mode():
            cond = Conditioner(self.network, mel, self.hop_length, CONDITION_CACHE_BYTES)
            consistency = MelConsistency(self.mel_transform, mel) if gain_adjust or refine else None
        std = noise_std(mel, self.recipe.audio, self.recipe.diffusion, length)
        wav = self._sample(cond, mel.shape[0], length, steps, sampler, seed, generator, on_step,
                           schedule=schedule, eta=eta, prior_std=std,
                           project=consistency.project if gain_adjust else None)
        if refine:
            with torch.inference_mode():
                wav = consistency.refine(wav.to(self.device), refine).clamp(-1.0, 1.0).cpu()
        return wav if batched else wav[0]

    def consistency_settings(self, gain_adjust: bool | None = None, refine: int | None = None) -> tuple[bool, int]:
        """(gain_adjust, refine) as `vocode` runs them: None takes the checkpoint's setting."""
        gain_adjust = self.default_gain_adjust if gain_adjust is None else bool(gain_adjust)
        refine = self.default_refine if refine is None else int(refine)
        if refine < 0:
            raise AudiodiffError(f"refine {refine}: must be >= 0")
        return gain_adjust, refine

    def describe_sampling(self, steps: int, sampler: str | None = None, gain_adjust: bool | None = None,
                          refine: int | None = None) -> str:
        """`_Model.describe_sampling` plus the mel-consistency settings."""
        gain_adjust, refine = self.consistency_settings(gain_adjust, refine)
        parts = [super().describe_sampling(steps, sampler)] + (["mel gain adjustment"] if gain_adjust else [])
        return ", ".join(parts + ([f"{refine} refinement iterations"] if refine else []))

    def resynthesize(self, wav: torch.Tensor | np.ndarray, **kwargs) -> torch.Tensor:
        """Analysis-synthesis: audio [samples] -> its mel -> vocoded audio, same length."""
        wav = torch.as_tensor(wav, dtype=torch.float32)
        out = self.vocode(self.mel(wav).cpu(), **kwargs)
        return out[..., :wav.shape[-1]]


class Generator(_Model):
    """Unconditional generation: noise in, sound out."""

    def __init__(self, network: nn.Module, recipe: Recipe, **kwargs):
        if network.conditional:
            raise AudiodiffError(f"{kwargs.get('source', 'model')}: this is a mel-conditioned vocoder; "
                                 f"use Vocoder / `audiodiff vocode`")
        super().__init__(network, recipe, **kwargs)

    @property
    def default_steps(self) -> int:
        """The checkpoint's chosen step count, else the training schedule's length."""
        return self._default_steps or len(training_schedule(self.recipe.diffusion))

    def generate(self, seconds: float, count: int = 1, steps: int | None = None, sampler: str | None = None,
                 seed: int | None = 0, generator: torch.Generator | None = None,
                 on_step: StepCallback = None) -> torch.Tensor:
        """-> [count, round(seconds * sample_rate)] waveforms of any length."""
        length = int(round(seconds * self.sample_rate))
        if length <= 0 or count <= 0:
            raise AudiodiffError("--seconds and -n must be positive")
        steps = self.default_steps if steps is None else steps
        return self._sample(None, count, length, steps, sampler, seed, generator, on_step)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> Vocoder | Generator:
    """A Vocoder or a Generator, whichever the checkpoint holds."""
    data = load_checkpoint(path)
    cls = Vocoder if data["recipe_obj"].model.conditional else Generator
    return cls.from_checkpoint_data(data, str(path), device)
