"""The trainer's data: the crop loader, crops split into audio and mel, the validation clip.

Crops come with `context_frames` frames of real audio each side, covering the STFT
window, so the mel frames of a crop equal those of the whole utterance; the split
takes the context off the audio after computing the mel.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from audiodiff.audio import MelSpectrogram, load_audio
from audiodiff.data import BatchLayout, Clip, CropDataset, StepBatchSampler, ignore_stop_signals
from audiodiff.recipe import AudioConfig, Recipe, TrainConfig
from audiodiff.training.distributed import DistContext


def context_frames(audio: AudioConfig) -> int:
    """Frames of context each side of a crop: enough to cover half the STFT window."""
    return -(-(audio.n_fft // 2) // audio.hop_length)


def batch_layout(cfg: TrainConfig, dist: DistContext) -> BatchLayout:
    """This process's share of a step's global batch: `train.batch_size` crops for each
    of `train.grad_accum` accumulation steps, its rank's among the run's processes."""
    return BatchLayout(cfg.batch_size, dist.rank, dist.world_size, cfg.grad_accum)


def crop_loader(recipe: Recipe, clips: list[Clip], step: int, dist: DistContext) -> DataLoader:
    """Batches [batch_size, 1, context + segment + context] of crops of `clips` for this
    process, from optimiser step `step` to train.max_steps (`grad_accum` per step); which
    crops depends only on (seed, step) (data/crops.py)."""
    cfg, audio = recipe.train, recipe.audio
    dataset = CropDataset(clips, audio.sample_rate, cfg.segment, audio.hop_length,
                          context=context_frames(audio) * audio.hop_length)
    sampler = StepBatchSampler(len(clips), batch_layout(cfg, dist), cfg.seed, step, cfg.max_steps)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.num_workers,
                      worker_init_fn=ignore_stop_signals if cfg.num_workers else None,
                      pin_memory=dist.device.type == "cuda")


def reference_clip(recipe: Recipe, validation: list[Clip]) -> torch.Tensor | None:
    """The validation clip [samples]: the first `train.validate_seconds` (whole hops) of the
    first validation clip; None without one."""
    if not validation:
        return None
    audio = recipe.audio
    n = int(recipe.train.validate_seconds * audio.sample_rate) // audio.hop_length * audio.hop_length
    return torch.from_numpy(load_audio(validation[0].path, audio.sample_rate)[:n])


class Crops:
    """Splits crops with context into the network's inputs, on `device`."""

    def __init__(self, recipe: Recipe, transform: MelSpectrogram, conditional: bool, device: torch.device):
        self.segment, self.hop = recipe.train.segment, recipe.audio.hop_length
        self.context = context_frames(recipe.audio)
        self.transform, self.conditional, self.device = transform, conditional, device

    def split(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Crops with context [B, 1, context + segment + context] -> (audio [B, 1, segment],
        its mel [B, n_mels, segment / hop], None for an unconditional network)."""
        seg, hop, c = self.segment, self.hop, self.context
        batch = batch.to(self.device, non_blocking=True)
        audio = batch[..., c * hop:c * hop + seg]
        if not self.conditional:
            return audio, None
        with torch.no_grad():
            mel = self.transform(batch.squeeze(1))[..., c:c + seg // hop]
        return audio, mel
