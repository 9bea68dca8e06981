"""Training data: finding clips in a data set, splitting them, and cutting crops.

`find_clips` reads the layout named by `data.source`; `scan_clips` checks each file
(unreadable or empty ones are skipped with a warning naming them); `split_clips`
makes the deterministic train/validation split a run keeps in its folder; and
`CropDataset` + `StepBatchSampler` yield `[batch, 1, segment]` crops whose choice
depends only on (seed, step), so a resumed run sees the same batches as an
uninterrupted one.
"""
from audiodiff.data.crops import CropDataset, StepBatchSampler
from audiodiff.data.sources import Clip, find_clips, scan_clips, split_clips

__all__ = ["Clip", "CropDataset", "StepBatchSampler", "find_clips", "scan_clips", "split_clips"]
