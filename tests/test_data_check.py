"""The bad-data rules, `audiodiff data check`, the resampled cache and crop reading."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.audio import load_audio
from audiodiff.data import Clip, CropDataset, inspect_file, prepare_training_data, read_segment, survey_data
from audiodiff.data.cache import cache_path
from audiodiff.errors import AudiodiffError
from audiodiff.recipe import load_recipe

from conftest import raises_naming

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "audiodiff" / "recipes" / "tiny.toml"


def tone(path: Path, seconds: float, rate: int = 16000, amplitude: float = 0.3, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), (amplitude * np.sin(2 * np.pi * 330 * t)).astype(np.float32), rate, subtype=subtype)
    return path


def plant_bad_files(root: Path) -> dict[str, Path]:
    """One of each kind of bad file, plus a clip shorter than a segment."""
    root.mkdir(parents=True, exist_ok=True)
    corrupt = root / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage, not audio" * 3)
    empty = root / "empty.wav"
    sf.write(str(empty), np.zeros(0, dtype=np.float32), 16000)
    nan = root / "nan.wav"
    wav = (0.3 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    wav[5000:5100] = np.nan
    sf.write(str(nan), wav, 16000, subtype="FLOAT")
    silent = root / "silent.flac"
    sf.write(str(silent), np.zeros(16000, dtype=np.float32), 16000)
    short = tone(root / "short.wav", 0.2)
    return {"corrupt": corrupt, "empty": empty, "nan": nan, "silent": silent, "short": short}


def folder_recipe(root: Path, *extra: str):
    return load_recipe(TINY, ["data.source=folder", f"data.root={root}", "audio.preset=custom",
                              "audio.sample_rate=16000", "audio.fmax=8000.0", "train.segment=8192", *extra])


def test_inspect_file_finds_each_kind_of_bad_file(tmp_path):
    bad = plant_bad_files(tmp_path)
    assert inspect_file(bad["corrupt"]).problem == "unreadable"
    assert inspect_file(tmp_path / "gone.wav").describe() == "unreadable (file not found)"
    assert inspect_file(bad["empty"]).problem == "empty"
    assert inspect_file(bad["nan"]).problem == "nan"
    silent = inspect_file(bad["silent"])
    assert silent.problem == "silent" and silent.describe() == "silent (peak -inf dBFS)"
    quiet = inspect_file(tone(tmp_path / "quiet.wav", 0.5, amplitude=0.01))  # -40 dBFS: quiet, not silent
    assert quiet.ok and quiet.sample_rate == 16000 and quiet.frames == 8000 and quiet.channels == 1
    assert abs(quiet.peak - 0.01) < 1e-3


def test_survey_sorts_files_into_usable_bad_and_short(tmp_path):
    bad = plant_bad_files(tmp_path)
    for i in range(5):
        tone(tmp_path / f"good{i}.wav", 1.0)
    survey = survey_data(folder_recipe(tmp_path))
    assert len(survey.scans) == 10 and len(survey.usable) == 6
    assert {s.problem: s.path.name for s in survey.bad} == {
        "unreadable": "corrupt.wav", "empty": "empty.wav", "nan": "nan.wav", "silent": "silent.flac"}
    assert [s.path for s in survey.short] == [bad["short"]]
    assert survey.bad_fraction == pytest.approx(0.4)
    assert "more than data.max_bad_fraction = 0.1" in survey.refusal()
    assert survey.summary() == "4 skipped: 1 unreadable, 1 empty, 1 NaN/inf samples, 1 silent"


def test_training_refuses_above_max_bad_fraction_and_names_the_files(tmp_path):
    plant_bad_files(tmp_path / "data")
    for i in range(5):
        tone(tmp_path / "data" / f"good{i}.wav", 1.0)
    messages: list[str] = []
    with raises_naming(AudiodiffError, f"data.root {tmp_path / 'data'}", "data.max_bad_fraction", "40.0%"):
        prepare_training_data(folder_recipe(tmp_path / "data"), tmp_path / "run", messages.append)
    named = " ".join(messages)
    for name in ("corrupt.wav", "empty.wav", "nan.wav", "silent.flac"):
        assert name in named
    # allowed with a higher limit: the four are skipped, the rest trained on
    data = prepare_training_data(folder_recipe(tmp_path / "data", "data.max_bad_fraction=0.5"),
                                 tmp_path / "run2", messages.append)
    assert len(data.train) + len(data.validation) == 6
    skipped = (tmp_path / "run2" / "skipped.txt").read_text().splitlines()
    assert sorted(Path(line.split("\t")[0]).name for line in skipped) == [
        "corrupt.wav", "empty.wav", "nan.wav", "silent.flac"]


def test_nothing_usable_is_an_error(tmp_path):
    plant_bad_files(tmp_path)
    for name in ("short.wav",):
        (tmp_path / name).unlink()
    with raises_naming(AudiodiffError, f"data.root {tmp_path}", "nothing usable"):
        prepare_training_data(folder_recipe(tmp_path, "data.max_bad_fraction=1.0"), tmp_path / "run", print)


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run `audiodiff ARGS` in this process: (exit code, stdout, stderr)."""
    from audiodiff.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["audiodiff", *args])
        monkeypatch.setenv("COLUMNS", "200")
        try:
            main()
            code = 0
        except SystemExit as stop:
            code = stop.code or 0
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


def test_data_check_cli_names_corrupt_and_short_files(tmp_path, run_cli):
    bad = plant_bad_files(tmp_path / "data")
    for i in range(12):
        tone(tmp_path / "data" / "speaker" / f"good{i:02d}.wav", 1.0 + i / 10)
    code, out, err = run_cli("data", "check", str(TINY), "--set", "data.source=folder", "--set", f"data.root={tmp_path / 'data'}",
                             "--set", "audio.preset=custom", "--set", "audio.sample_rate=16000", "--set", "audio.fmax=8000.0",
                             "--set", "data.max_bad_fraction=0.5")
    assert code == 0, err
    assert "17 (13 usable)" in out
    assert "16000 Hz: 16 files" in out  # every file that decodes
    for kind, path in bad.items():
        assert str(path) in out, kind
    assert f"{bad['corrupt']}: unreadable (" in out
    assert f"{bad['short']}: 0.20 s" in out  # shorter than a segment (8192 samples = 0.51 s)
    assert "shorter than a segment (zero-padded): 1 file" in out
    assert "ready: 13 clips" in out


def test_data_check_cli_exits_2_when_nothing_is_usable(tmp_path, run_cli):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "broken.wav").write_bytes(b"not audio at all")
    code, out, err = run_cli("data", "check", str(TINY), "--set", "data.source=folder", "--set", f"data.root={tmp_path / 'data'}")
    assert code == 2
    assert "broken.wav: unreadable" in out and "not usable" in out
    assert err.count("error:") == 1 and "1 of 1 files are unusable" in err and "Traceback" not in err
    code, out, err = run_cli("data", "check", str(TINY), "--set", f"data.root={tmp_path / 'nowhere'}")
    assert code == 2 and "folder not found" in err


def test_write_cache_then_training_reads_it(tmp_path, run_cli):
    for i in range(4):
        tone(tmp_path / "data" / f"d{i}.wav", 0.5 + i / 4, rate=8000)
    cache = tmp_path / "cache"
    r = folder_recipe(tmp_path / "data", f"data.cache_dir={cache}")
    code, out, err = run_cli("data", "check", str(TINY), "--write-cache", "--set", "data.source=folder",
                             "--set", f"data.root={tmp_path / 'data'}", "--set", "audio.preset=custom",
                             "--set", "audio.sample_rate=16000", "--set", "audio.fmax=8000.0", "--set", f"data.cache_dir={cache}")
    assert code == 0, err
    assert "4 files written" in err
    assert "4 of 4 cached" in out
    target = cache_path(cache, tmp_path / "data", tmp_path / "data" / "d3.wav", 16000)
    assert target == cache / "16000hz" / "d3.wav"
    info = sf.info(str(target))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    data = prepare_training_data(r, tmp_path / "run", print)
    assert data.resampled == 4 and data.cached == 4
    assert all(c.cache is not None for c in data.train + data.validation)
    # the crop from the cache matches resampling on the fly (to 16-bit rounding)
    clip = next(c for c in data.train if c.path.name == "d3.wav")
    crops = CropDataset([clip], 16000, 8192, 256)
    fly = CropDataset([Clip(clip.path, clip.sample_rate, clip.frames)], 16000, 8192, 256)
    assert torch.allclose(crops[(0, 1)], fly[(0, 1)], atol=1e-4)
    # a source newer than its copy makes the copy stale
    os.utime(clip.path, ns=(target.stat().st_mtime_ns + 10**9,) * 2)
    data = prepare_training_data(r, tmp_path / "run", print)
    assert data.cached == 3


def test_write_cache_needs_a_cache_dir(tmp_path, run_cli):
    tone(tmp_path / "a.wav", 0.5, rate=8000)
    code, _, err = run_cli("data", "check", str(TINY), "--write-cache", "--set", "data.source=folder",
                           "--set", f"data.root={tmp_path}")
    assert code == 2 and "data.cache_dir" in err


@pytest.mark.parametrize("native,rate", [(8000, 16000), (48000, 22050), (44100, 24000)])
def test_read_segment_matches_resampling_the_whole_file(tmp_path, native, rate):
    path = tmp_path / "x.wav"
    rng = np.random.default_rng(0)
    sf.write(str(path), (0.2 * rng.standard_normal(3 * native)).astype(np.float32), native, subtype="FLOAT")
    whole = load_audio(path, rate)
    for start in (0, 256 * 7, rate, 3 * rate - 1000):
        part = read_segment(path, native, rate, start, 4096)
        ref = whole[start:start + 4096]
        assert len(part) == len(ref)
        np.testing.assert_allclose(part, ref, atol=1e-5)


def test_crop_dataset_survives_a_file_broken_during_training(tmp_path, capfd):
    good = tone(tmp_path / "good.wav", 1.0)
    broken = tone(tmp_path / "broken.wav", 1.0)
    clips = [Clip(broken, 16000, 16000), Clip(good, 16000, 16000)]
    broken.write_bytes(b"overwritten")
    crops = CropDataset(clips, 16000, 4096, 256)
    for seed in range(3):
        crop = crops[(0, seed)]
        assert crop.shape == (1, 4096) and float(crop.abs().max()) > 0.1  # taken from good.wav
    err = capfd.readouterr().err
    assert err.count(f"warning: skipping {broken} during training") == 1


def test_split_is_saved_and_reused(tmp_path):
    for i in range(6):
        tone(tmp_path / "data" / f"c{i}.wav", 1.0)
    r = folder_recipe(tmp_path / "data", "data.validation_count=2")
    first = prepare_training_data(r, tmp_path / "run", print)
    saved = json.loads((tmp_path / "run" / "split.json").read_text())
    assert len(saved["train"]) == 4 and len(saved["validation"]) == 2
    tone(tmp_path / "data" / "c9.wav", 1.0)  # a new file does not reshuffle a resumed run
    again = prepare_training_data(r, tmp_path / "run", print)
    assert [c.path for c in again.validation] == [c.path for c in first.validation]
    assert [c.path for c in again.train] == [c.path for c in first.train]
    assert (tmp_path / "run" / "data-scan.json").is_file()
