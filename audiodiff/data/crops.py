"""Random crops of `segment` samples, chosen from (seed, step) alone."""
from __future__ import annotations

import math
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset, Sampler

from audiodiff.audio import load_audio, resample
from audiodiff.data.sources import Clip
from audiodiff.errors import first_line

#: Native samples read beyond each end of a crop before resampling it, per unit of
#: the down-sampling ratio: enough for soxr's HQ filter to settle (the crop then
#: matches resampling the whole file to within 1e-6; 64 would leave errors of 1e-3).
RESAMPLE_MARGIN = 256
#: How many other clips a crop may fall back on when its file fails to read.
FALLBACK_TRIES = 8


def read_segment(path: str | Path, native_rate: int, rate: int, start: int, length: int) -> np.ndarray:
    """Samples [start, start + length) of a file at `rate`, mono float32 (shorter at the end).

    Only the span needed is read: at the native rate the crop itself, otherwise the
    matching native span plus a margin, resampled with soxr. So resampling on the fly
    costs about the same for a 1 s clip and a 20 min recording.
    """
    with sf.SoundFile(str(path)) as f:
        if native_rate == rate:
            f.seek(min(start, f.frames))
            return f.read(length, dtype="float32", always_2d=True).mean(axis=1)
        step_in = native_rate // math.gcd(native_rate, rate)  # a native index that lands on an output index
        margin = RESAMPLE_MARGIN * max(1, -(-native_rate // rate))
        first = min(max(0, (start * native_rate // rate - margin) // step_in * step_in), f.frames)
        last = -(-(start + length) * native_rate // rate) + margin
        f.seek(first)
        wav = f.read(max(0, last - first), dtype="float32", always_2d=True).mean(axis=1)
        total = -(-f.frames * rate // native_rate)  # the length of the whole file resampled
    if wav.size == 0:
        return wav
    out = resample(wav, native_rate, rate)
    offset = start - first * rate // native_rate
    return out[offset:max(offset, min(offset + length, total - first * rate // native_rate))]


class CropDataset(Dataset):
    """Items are keyed by (clip index, crop seed) -> crop [1, context + segment + context].

    `context` samples of real audio (zeros past the clip's ends) on each side let the
    trainer compute the crop's mel frames as they are in the whole utterance, instead
    of with reflect padding at the crop's edges.

    The crop start is a multiple of `hop` (so mel frames line up); clips shorter
    than a segment are zero-padded at the end. A clip with a resampled copy in the
    cache is read from it; otherwise clips at another rate are resampled on the fly.

    A file that fails to read during training (deleted, changed or damaged since the
    scan) never stops a run: a warning naming it goes to stderr (once per worker) and
    the crop comes from another clip; NaN or infinite samples are zeroed.
    """

    def __init__(self, clips: list[Clip], sample_rate: int, segment: int, hop: int, context: int = 0):
        self.clips, self.sample_rate, self.segment, self.hop = clips, sample_rate, segment, hop
        self.context = context
        self._failed: set[int] = set()

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        index, crop_seed = key
        for attempt in range(FALLBACK_TRIES + 1):
            i = (index + attempt) % len(self.clips)
            if i in self._failed and attempt < FALLBACK_TRIES:
                continue
            try:
                return self._crop(self.clips[i], crop_seed)
            except Exception as exc:  # noqa: BLE001 - any read failure: warn, use another clip
                if i not in self._failed:
                    self._failed.add(i)
                    print(f"warning: skipping {self.clips[i].path} during training: {first_line(exc)}",
                          file=sys.stderr, flush=True)
        return torch.zeros(1, self.segment + 2 * self.context)

    def _crop(self, clip: Clip, crop_seed: int) -> torch.Tensor:
        length = clip.samples_at(self.sample_rate)
        positions = max(0, length - self.segment) // self.hop + 1
        start = int(np.random.default_rng(crop_seed).integers(positions)) * self.hop
        total = self.segment + 2 * self.context
        lead = max(0, self.context - start)  # zeros before the clip's first sample
        wav = self._read(clip, start - self.context + lead, total - lead)
        out = np.zeros(total, dtype=np.float32)
        n = min(len(wav), total - lead)
        out[lead:lead + n] = np.nan_to_num(wav[:n], nan=0.0, posinf=0.0, neginf=0.0)
        return torch.from_numpy(out).unsqueeze(0)

    def _read(self, clip: Clip, start: int, length: int) -> np.ndarray:
        if clip.cache is not None:
            try:
                return read_segment(clip.cache, self.sample_rate, self.sample_rate, start, length)
            except Exception:  # noqa: BLE001 - a damaged cache file: fall back to the source
                pass
        try:
            return read_segment(clip.path, clip.sample_rate, self.sample_rate, start, length)
        except sf.LibsndfileError:  # a format soundfile cannot seek in: decode it whole
            return load_audio(clip.path, self.sample_rate)[start:start + length]


def ignore_stop_signals(worker_id: int) -> None:  # noqa: ARG001 - DataLoader's worker_init_fn signature
    """DataLoader workers leave SIGINT and SIGTERM to the trainer.

    Ctrl-C, and `kill` of a process group (a job scheduler, `pkill -f`), signal the
    workers too; a worker that dies of it makes the main process fail with a traceback
    while it is saving the interrupted step. Ignoring them here lets the trainer save and
    shut its workers down itself (they also exit when the trainer dies).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.excepthook = quiet_fd_sharing_hangup
    sys.excepthook = quiet_fd_sharing_hangup_sys  # resource_sharer's own loop reports through sys.excepthook


def quiet_fd_sharing_hangup(args: threading.ExceptHookArgs) -> None:
    """A worker's thread hook: say nothing when the thread that hands a batch's file
    descriptors to the trainer (multiprocessing.resource_sharer) loses its connection.

    That happens when the trainer stops, and shuts its workers down, in the middle of a
    hand-over; the worker's thread then printed a ConnectionResetError traceback after
    the trainer's clean "Interrupted: saving step" (seen about once in a dozen SIGTERMs).
    Any other exception is reported as Python would.
    """
    if not _is_fd_sharing_hangup(args.exc_type, args.exc_traceback):
        threading.__excepthook__(args)


def quiet_fd_sharing_hangup_sys(exc_type, exc_value, exc_traceback) -> None:
    """The same rule as `quiet_fd_sharing_hangup`, as a worker's sys.excepthook: the
    resource-sharer thread catches its own errors and passes them to sys.excepthook
    (multiprocessing/resource_sharer.py, `_serve`), so the thread hook alone never saw them."""
    if not _is_fd_sharing_hangup(exc_type, exc_traceback):
        sys.__excepthook__(exc_type, exc_value, exc_traceback)


def _is_fd_sharing_hangup(exc_type, exc_traceback) -> bool:
    """A lost connection (ConnectionError, EOFError) raised in multiprocessing.resource_sharer."""
    frames = traceback.extract_tb(exc_traceback) if exc_traceback is not None else []
    return issubclass(exc_type, (ConnectionError, EOFError)) and \
        any(f.filename.endswith("resource_sharer.py") for f in frames)


@dataclass(frozen=True)
class BatchLayout:
    """How a step's global batch of `batch_size x world_size x accum` rows is split: one
    micro-batch of `batch_size` rows per process (`rank` of `world_size`) and accumulation
    step (`accum` per step), laid out as [accum][world_size][batch_size]."""
    batch_size: int
    rank: int = 0
    world_size: int = 1
    accum: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, {self.world_size})")

    @property
    def global_batch(self) -> int:
        """Rows per step: batch_size x world_size x accum."""
        return self.batch_size * self.world_size * self.accum

    def offset(self, micro: int) -> int:
        """First row, in the global batch, of this process's accumulation step `micro`:
        it holds rows [offset, offset + batch_size)."""
        return (micro * self.world_size + self.rank) * self.batch_size


class StepBatchSampler(Sampler):
    """Yields, for each training step from `start_step`, this process's micro-batches of
    (clip index, crop seed): `layout.accum` lists of `layout.batch_size` pairs per step.

    Step s draws one global batch of `layout.global_batch` crops from (seed, s) alone,
    and process `layout.rank` takes its rows of it (see `BatchLayout.offset`). So
    the crops of a step do not depend on how the global batch is split over processes
    and accumulation steps (one process with `batch_size` = the global batch sees the
    same crops), they are drawn afresh at every step, and resuming at step s
    reproduces them.
    """

    def __init__(self, n_clips: int, layout: BatchLayout, seed: int, start_step: int, end_step: int):
        self.n_clips, self.layout, self.seed = n_clips, layout, seed
        self.start_step, self.end_step = start_step, end_step

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step) * self.layout.accum

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        layout, n = self.layout, self.layout.batch_size
        for step in range(self.start_step, self.end_step):
            rng = np.random.default_rng([self.seed, step])
            idx = rng.integers(self.n_clips, size=layout.global_batch)
            seeds = rng.integers(2 ** 62, size=layout.global_batch)
            for micro in range(layout.accum):
                o = layout.offset(micro)
                yield [(int(i), int(s)) for i, s in zip(idx[o:o + n], seeds[o:o + n])]
