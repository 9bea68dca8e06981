"""Data set layouts, chosen by `data.source`, and the train/validation split.

Each layout lists the audio files of a data set and, where the data set defines one,
the split each file belongs to:

* ``folder``: every audio file under `root`, recursively (hidden folders skipped); no split.
* ``ljspeech``: LJSpeech 1.1 (`metadata.csv` of `ID|text|normalized text`, audio in
  `wavs/ID.wav`; `wavs/ID.flac` too, as the Kathleen set has it); no split.
* ``vctk``: VCTK 0.92 (`wav48_silence_trimmed/<speaker>/<speaker>_<n>_mic1.flac`,
  the first of its two microphones); no split.
* ``maestro``: MAESTRO v3 (`maestro-v3.0.0.csv`: `split` column train / validation /
  test, `audio_filename` relative to `root`).
* ``sc09``: Speech Commands restricted to the digit words `zero` ... `nine`
  (`<word>/<speaker>_nohash_<n>.wav`); `validation_list.txt` and `testing_list.txt`
  name the validation and test files, the rest is training.

A file a layout names but that is missing (a metadata line without its audio) is
still listed, so the scan reports it as unreadable rather than dropping it silently.
Test files are never used for training.
"""
from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from audiodiff.atomic import atomic_path
from audiodiff.audio import AUDIO_SUFFIXES
from audiodiff.errors import AudiodiffError
from audiodiff.recipe import DataConfig

SPLITS = ("train", "validation", "test")
SC09_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class SourceFile:
    """One file a layout names, and its split (None where the data set has no split)."""
    path: Path
    split: str | None = None


@dataclass(frozen=True)
class Clip:
    """One usable audio file: path, native rate, length in native samples.

    `cache` is a copy already resampled to the model's rate (see data/cache.py), read
    instead of `path` when present.
    """
    path: Path
    sample_rate: int
    frames: int
    cache: Path | None = None

    def samples_at(self, rate: int) -> int:
        return self.frames * rate // self.sample_rate


#: How the errors about a missing data set tell the user to point the recipe elsewhere.
POINT_ELSEWHERE = "point the recipe at your audio with --data DIR"


def data_root(config: DataConfig) -> Path:
    """The data set's folder (a relative data.root is read from the current folder).

    Raises AudiodiffError naming the folder, and saying how to point the recipe at
    another, when it does not exist.
    """
    root = Path(config.root).expanduser()
    if not root.is_dir():
        where = "" if root.is_absolute() else f" (relative to the current folder, {Path.cwd()})"
        raise AudiodiffError(f"data.root {root}: folder not found{where}; {POINT_ELSEWHERE}")
    return root


def list_files(config: DataConfig) -> list[SourceFile]:
    """Every file of the data set (test files included), in a fixed order.

    Raises AudiodiffError naming the root if the layout is not there or holds no audio.
    """
    root = data_root(config)
    files = _LAYOUTS[config.source](root)
    if not files:
        raise AudiodiffError(f"data.root {root}: no audio files found (source {config.source!r}"
                             f"{'' if config.source == 'folder' else ', ' + _EXPECTED[config.source]})")
    return files


# ---------------------------------------------------------------------- layouts
def _folder(root: Path) -> list[SourceFile]:
    paths = (p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
             and not any(part.startswith(".") for part in p.relative_to(root).parts) and p.is_file())
    return [SourceFile(p) for p in sorted(paths)]


def _ljspeech(root: Path) -> list[SourceFile]:
    meta = _require(root / "metadata.csv", "ljspeech")
    files = []
    for line in meta.read_text(encoding="utf-8").splitlines():
        clip_id = line.split("|", 1)[0].strip()
        if not clip_id:
            continue
        candidates = [root / "wavs" / f"{clip_id}{suffix}" for suffix in (".wav", ".flac")]
        files.append(SourceFile(next((p for p in candidates if p.is_file()), candidates[0])))
    return files


def _vctk(root: Path) -> list[SourceFile]:
    audio = root if root.name == "wav48_silence_trimmed" else root / "wav48_silence_trimmed"
    if not audio.is_dir():
        raise AudiodiffError(f"{audio}: not found (source 'vctk' expects {_EXPECTED['vctk']})")
    return [SourceFile(p) for p in sorted(audio.glob("*/*_mic1.flac")) if p.is_file()]


def _maestro(root: Path) -> list[SourceFile]:
    tables = sorted(root.glob("maestro-v*.csv"))
    if not tables:
        raise AudiodiffError(f"{root / 'maestro-v3.0.0.csv'}: not found (source 'maestro' expects "
                             f"{_EXPECTED['maestro']})")
    table = tables[-1]
    with open(table, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"split", "audio_filename"} - set(reader.fieldnames or ())
        if missing:
            raise AudiodiffError(f"{table}: no column {sorted(missing)[0]!r} (a MAESTRO table has "
                                 f"split and audio_filename columns)")
        files = []
        for row in reader:
            split = row["split"].strip()
            if split not in SPLITS:
                raise AudiodiffError(f"{table}: line {reader.line_num}: unknown split {split!r}")
            files.append(SourceFile(root / row["audio_filename"].strip(), split))
    return sorted(files, key=lambda f: str(f.path))


def _sc09(root: Path) -> list[SourceFile]:
    lists = {}
    for split, name in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
        text = _require(root / name, "sc09").read_text(encoding="utf-8")
        lists.update({line.strip(): split for line in text.splitlines() if line.strip()})
    files = []
    for word in SC09_WORDS:
        for path in sorted((root / word).glob("*.wav")):
            files.append(SourceFile(path, lists.get(f"{word}/{path.name}", "train")))
    return files


_LAYOUTS = {"folder": _folder, "ljspeech": _ljspeech, "vctk": _vctk, "maestro": _maestro, "sc09": _sc09}
_EXPECTED = {
    "folder": "audio files anywhere below the root",
    "ljspeech": "metadata.csv and wavs/ID.wav (or .flac)",
    "vctk": "the VCTK-Corpus-0.92 folder, holding wav48_silence_trimmed/<speaker>/*_mic1.flac",
    "maestro": "maestro-v3.0.0.csv beside the year folders (2004/ ... 2018/)",
    "sc09": "the Speech Commands folder: zero/ ... nine/, validation_list.txt, testing_list.txt",
}


def _require(path: Path, source: str) -> Path:
    if not path.is_file():
        raise AudiodiffError(f"{path}: not found (source {source!r} expects {_EXPECTED[source]}; "
                             f"for a plain folder of audio add --set data.source=folder)")
    return path


# ---------------------------------------------------------------------- header scan and split
def split_clips(clips: list[Clip], count: int, seed: int, split_file: Path,
                assigned: dict[str, str] | None = None) -> tuple[list[Clip], list[Clip]]:
    """Deterministic (train, validation) split; stored in `split_file` and reused on resume.

    `assigned` maps a path (str) to the data set's own split; if it names any
    validation clip, that split is used (test clips dropped), else `count` clips are
    drawn at random with `seed`.
    """
    by_path = {str(c.path): c for c in clips}
    if split_file.is_file():
        saved = json.loads(split_file.read_text())
        train = [by_path[p] for p in saved["train"] if p in by_path]
        val = [by_path[p] for p in saved["validation"] if p in by_path]
        return train, val
    assigned = assigned or {}
    if any(assigned.get(p) == "validation" for p in by_path):
        val = sorted(p for p in by_path if assigned.get(p) == "validation")
        train = sorted(p for p in by_path if assigned.get(p, "train") == "train")
    else:
        order = sorted(by_path)
        random.Random(seed).shuffle(order)
        count = min(count, max(0, len(order) - 1))
        val, train = sorted(order[:count]), sorted(order[count:])
    with atomic_path(split_file) as tmp:
        tmp.write_text(json.dumps({"train": train, "validation": val}, indent=1))
    return [by_path[p] for p in train], [by_path[p] for p in val]
