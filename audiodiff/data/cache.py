"""A cache of files resampled to the model's rate, so training need not resample.

Layout: `<data.cache_dir>/<rate>hz/<path below data.root>` with `.wav` appended unless
the name already ends in it, e.g. `runs/cache/fsdd/16000hz/recordings/0_george_0.wav`.
Files are 16-bit mono WAV (half the size of float, and the sources are 16-bit), the
fastest format to read a crop from. A cached copy counts only while it is newer than
its source; anything else is resampled on the fly, so a partial cache is harmless.
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path


from audiodiff.audio import load_audio, save_audio
from audiodiff.data.sources import Clip



def cache_path(cache_dir: str | Path, root: str | Path, path: Path, rate: int) -> Path:
    """Where the copy of `path` (a file of the data set at `root`) resampled to `rate` lives."""
    try:
        rel = path.resolve().relative_to(Path(root).expanduser().resolve())
    except ValueError:  # not below the root (a layout naming files elsewhere)
        rel = Path("_outside") / hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16] / path.name
    if rel.suffix.lower() != ".wav":
        rel = rel.parent / f"{rel.name}.wav"
    return Path(cache_dir).expanduser() / f"{rate}hz" / rel


def needs_resampling(clip: Clip, rate: int) -> bool:
    return clip.sample_rate != rate


def is_fresh(cache: Path, source: Path) -> bool:
    try:
        return cache.stat().st_mtime_ns >= source.stat().st_mtime_ns
    except OSError:
        return False


def attach_cache(clips: list[Clip], cache_dir: str, root: str, rate: int) -> tuple[list[Clip], int, int]:
    """Point each clip that needs resampling at its cached copy, where a fresh one exists.

    Returns (clips, how many now read from the cache, how many need resampling).
    """
    need = [c for c in clips if needs_resampling(c, rate)]
    if not cache_dir or not need:
        return clips, 0, len(need)
    out, cached = [], 0
    for clip in clips:
        if needs_resampling(clip, rate):
            target = cache_path(cache_dir, root, clip.path, rate)
            if is_fresh(target, clip.path):
                clip = dataclasses.replace(clip, cache=target)
                cached += 1
        out.append(clip)
    return out, cached, len(need)


def write_cache(clips: list[Clip], cache_dir: str, root: str, rate: int,
                on_file: Callable[[Path], None] | None = None) -> tuple[int, int]:
    """Write the resampled copy of every clip that needs one and lacks a fresh one.

    Each file is written to a temp file, then renamed. Returns (written, already there).
    """
    written = kept = 0
    for clip in clips:
        if not needs_resampling(clip, rate):
            continue
        target = cache_path(cache_dir, root, clip.path, rate)
        if is_fresh(target, clip.path):
            kept += 1
        else:
            # save_audio clips to [-1, 1] (resampling may overshoot) and renames atomically;
            # no fsync: a copy damaged by a power cut fails to read and training uses the source
            save_audio(target, load_audio(clip.path, rate), rate, fsync=False)
            written += 1
        if on_file is not None:
            on_file(clip.path)
    return written, kept
