"""Training data: data set layouts, the bad-data rules, crops, and `audiodiff data check`.

`sources.list_files` reads the layout named by `data.source` (folder, ljspeech, vctk,
maestro, sc09); `scan.scan_files` reads every file once (unreadable, empty, NaN or
silent files are found there); `survey.prepare_training_data` applies the rules (skip
bad files with a warning naming each, refuse above `data.max_bad_fraction`, pad or
skip clips shorter than a segment) and makes the deterministic train/validation split
a run keeps in its folder; `cache` holds copies resampled to the model's rate; and
`CropDataset` + `StepBatchSampler` yield `[batch, 1, segment]` crops whose choice
depends only on (seed, step), so a resumed run sees the same batches as an
uninterrupted one (and each process of a distributed run takes its share of them).
`check.run_check` is the `audiodiff data check` command.
"""
from audiodiff.data.crops import BatchLayout, CropDataset, StepBatchSampler, ignore_stop_signals, read_segment
from audiodiff.data.scan import FileScan, inspect_file, scan_files
from audiodiff.data.sources import Clip, SourceFile, list_files, split_clips
from audiodiff.data.survey import Survey, TrainingData, prepare_training_data, survey_data

__all__ = ["BatchLayout", "Clip", "CropDataset", "FileScan", "SourceFile", "StepBatchSampler", "Survey",
           "TrainingData", "ignore_stop_signals", "inspect_file", "list_files", "prepare_training_data",
           "read_segment", "scan_files", "split_clips", "survey_data"]
