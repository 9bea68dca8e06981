"""Reading every file of a data set once: its format, length, and whether it is usable.

`inspect_file` decodes a whole file in blocks (bounded memory, even for a 20-minute
recording) and reports its rate, channels, length and peak, or the reason it cannot
be trained on: unreadable (missing, unknown format, damaged), empty, NaN or infinite
samples, or silent. `scan_files` does that for a list of files on a few threads and
can keep the results in a JSON file keyed by size and modification time, so a
resumed run does not read a large data set again.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from audiodiff.atomic import atomic_path
from audiodiff.errors import first_line

#: A file whose peak is below this is silent: -80 dBFS, about 3 steps of 16-bit audio.
#: (The quietest real take in ../shared/data, an FSDD digit, peaks near -40 dBFS.)
SILENT_PEAK = 1e-4
BLOCK_FRAMES = 1 << 20
PROBLEMS = ("unreadable", "empty", "nan", "silent")
_SCAN_VERSION = 1


@dataclass(frozen=True)
class FileScan:
    """What one file holds. `problem` is None for a usable file, else one of PROBLEMS."""
    path: Path
    sample_rate: int = 0
    channels: int = 0
    frames: int = 0
    peak: float = 0.0
    problem: str | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    def describe(self) -> str:
        """The problem in words, e.g. 'unreadable (Format not recognised)'."""
        if self.problem is None:
            return "usable"
        return {"unreadable": f"unreadable ({self.reason})",
                "empty": "empty (no samples)",
                "nan": "contains NaN or infinite samples",
                "silent": f"silent (peak {_dbfs(self.peak)})"}[self.problem]


def inspect_file(path: str | Path) -> FileScan:
    """Decode `path` completely and describe it; never raises for a bad file."""
    path = Path(path)
    if not path.is_file():
        return FileScan(path, problem="unreadable", reason="file not found")
    try:
        rate, channels, frames, peak, finite = _decode_soundfile(path)
    except Exception as exc:  # noqa: BLE001 - soundfile cannot read it; try librosa's decoders
        try:
            rate, channels, frames, peak, finite = _decode_librosa(path)
        except Exception:  # noqa: BLE001
            return FileScan(path, problem="unreadable", reason=first_line(exc, 160))
    result = FileScan(path, rate, channels, frames, peak)
    if frames == 0:
        return FileScan(path, rate, channels, 0, 0.0, problem="empty")
    if not finite:
        return FileScan(path, rate, channels, frames, 0.0, problem="nan")
    if peak < SILENT_PEAK:
        return FileScan(path, rate, channels, frames, peak, problem="silent")
    return result


def _decode_soundfile(path: Path) -> tuple[int, int, int, float, bool]:
    frames, peak = 0, 0.0
    with sf.SoundFile(str(path)) as f:
        rate, channels = int(f.samplerate), int(f.channels)
        while True:
            block = f.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
            if not len(block):
                break
            frames += len(block)
            if not np.isfinite(block).all():
                return rate, channels, frames, 0.0, False
            peak = max(peak, float(np.abs(block).max()))
    return rate, channels, frames, peak, True


def _decode_librosa(path: Path) -> tuple[int, int, int, float, bool]:
    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wav, rate = librosa.load(str(path), sr=None, mono=False)
    wav = np.atleast_2d(wav)
    finite = bool(np.isfinite(wav).all())
    peak = float(np.abs(wav).max()) if wav.size and finite else 0.0
    return int(rate), int(wav.shape[0]), int(wav.shape[-1]), peak, finite


def scan_files(paths: list[Path], on_file: Callable[[FileScan], None] | None = None,
               cache_file: Path | None = None, threads: int | None = None) -> list[FileScan]:
    """`inspect_file` for each path, in order; `on_file` is called after each one.

    With `cache_file`, results for files whose size and modification time have not
    changed are taken from it, and the file is rewritten with the new results.
    """
    known = _load_scan_cache(cache_file)
    stamps = {str(p): _stamp(p) for p in paths}

    def work(path: Path) -> FileScan:
        entry = known.get(str(path))
        if entry is not None and stamps[str(path)] is not None and entry["stamp"] == stamps[str(path)]:
            return FileScan(path, **entry["scan"])
        return inspect_file(path)

    threads = threads or min(4, os.cpu_count() or 1)
    results = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for result in pool.map(work, paths):
            results.append(result)
            if on_file is not None:
                on_file(result)
    if cache_file is not None:
        _save_scan_cache(cache_file, results, stamps)
    return results


def _stamp(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _load_scan_cache(cache_file: Path | None) -> dict:
    if cache_file is None or not cache_file.is_file():
        return {}
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
        return data["files"] if data.get("version") == _SCAN_VERSION else {}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}  # a damaged cache is just not used


def _save_scan_cache(cache_file: Path, results: list[FileScan], stamps: dict) -> None:
    files = {}
    for r in results:
        if stamps.get(str(r.path)) is None:
            continue
        scan = {k: v for k, v in asdict(r).items() if k != "path"}
        files[str(r.path)] = {"stamp": stamps[str(r.path)], "scan": scan}
    with atomic_path(cache_file) as tmp:
        tmp.write_text(json.dumps({"version": _SCAN_VERSION, "files": files}), encoding="utf-8")


def _dbfs(peak: float) -> str:
    return "-inf dBFS" if peak <= 0 else f"{20 * math.log10(peak):.0f} dBFS"
