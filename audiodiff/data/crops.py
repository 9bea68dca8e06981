"""Random crops of `segment` samples, chosen from (seed, step) alone."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset, Sampler

from audiodiff.audio import load_audio
from audiodiff.data.sources import Clip


class CropDataset(Dataset):
    """Items are keyed by (clip index, crop seed) -> crop [1, segment] float32.

    The crop start is a multiple of `hop` (so mel frames line up); clips shorter
    than a segment are zero-padded at the end.
    """

    def __init__(self, clips: list[Clip], sample_rate: int, segment: int, hop: int):
        self.clips, self.sample_rate, self.segment, self.hop = clips, sample_rate, segment, hop

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        index, crop_seed = key
        clip = self.clips[index]
        length = clip.samples_at(self.sample_rate)
        positions = max(0, length - self.segment) // self.hop + 1
        start = int(np.random.default_rng(crop_seed).integers(positions)) * self.hop
        wav = self._read(clip, start)
        out = np.zeros(self.segment, dtype=np.float32)
        out[:min(len(wav), self.segment)] = wav[:self.segment]
        return torch.from_numpy(out).unsqueeze(0)

    def _read(self, clip: Clip, start: int) -> np.ndarray:
        if clip.sample_rate == self.sample_rate:  # read just the crop
            wav, _ = sf.read(str(clip.path), start=start, frames=self.segment, dtype="float32", always_2d=True)
            return wav.mean(axis=1)
        return load_audio(clip.path, self.sample_rate)[start:start + self.segment]


class StepBatchSampler(Sampler):
    """Yields, for each training step from `start_step`, a batch of (clip index, crop seed).

    The batch of step s depends only on (seed, s): resuming at step s reproduces it.
    """

    def __init__(self, n_clips: int, batch_size: int, seed: int, start_step: int, end_step: int):
        self.n_clips, self.batch_size, self.seed = n_clips, batch_size, seed
        self.start_step, self.end_step = start_step, end_step

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.end_step):
            rng = np.random.default_rng([self.seed, step])
            idx = rng.integers(self.n_clips, size=self.batch_size)
            seeds = rng.integers(2 ** 62, size=self.batch_size)
            yield [(int(i), int(s)) for i, s in zip(idx, seeds)]


