"""Data set layouts on small generated trees laid out exactly as the real data sets are.

Each real-data recipe (ljspeech, vctk, maestro, sc09) is loaded as shipped, pointed at
a generated tree with `--set data.root=...`, surveyed, split and cropped.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiodiff.data import CropDataset, list_files, prepare_training_data, survey_data
from audiodiff.errors import AudiodiffError
from audiodiff.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "audiodiff" / "recipes"


def tone(path: Path, seconds: float, rate: int, channels: int = 1, freq: float = 440.0,
         subtype: str = "PCM_16") -> Path:
    """Write a sine (plus a little noise) of `seconds` at `rate`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    wav = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    if channels > 1:
        wav = np.stack([wav] * channels, axis=1)
    sf.write(str(path), wav.astype(np.float32), rate, subtype=subtype)
    return path


def recipe(name: str, root: Path, *extra: str):
    return load_recipe(RECIPES / f"{name}.toml", [f"data.root={root}", *extra])


def warnings_of(recipe_obj, out: Path) -> tuple[object, list[str]]:
    messages: list[str] = []
    data = prepare_training_data(recipe_obj, out, messages.append)
    return data, messages


# ---------------------------------------------------------------- LJSpeech
def make_ljspeech(root: Path, ids: list[str], missing: str | None = None, suffix: str = ".wav") -> Path:
    lines = []
    for i, clip_id in enumerate(ids):
        lines.append(f"{clip_id}|Printing, in the only sense {i}.|Printing, in the only sense {i}.")
        if clip_id != missing:
            tone(root / "wavs" / f"{clip_id}{suffix}", 1.0 + 0.1 * i, 22050)
    lines.append(f"{missing}|A line whose audio is missing.|A line whose audio is missing.") if missing else None
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_ljspeech_layout_lists_metadata_order_and_reports_missing_audio(tmp_path):
    root = make_ljspeech(tmp_path / "LJSpeech-1.1", [f"LJ001-{i:04d}" for i in range(1, 7)], missing="LJ001-0099")
    tone(root / "wavs" / "LJ999-0001.wav", 1.0, 22050)  # not in metadata.csv: not part of the set
    r = recipe("ljspeech", root)
    files = list_files(r.data)
    assert [f.path.name for f in files] == [f"LJ001-{i:04d}.wav" for i in range(1, 7)] + ["LJ001-0099.wav"]
    assert all(f.split is None for f in files)
    survey = survey_data(r)
    assert len(survey.usable) == 6
    [bad] = survey.bad
    assert bad.path.name == "LJ001-0099.wav" and bad.problem == "unreadable" and "not found" in bad.reason


def test_ljspeech_layout_reads_flac_as_kathleen_has_it(tmp_path):
    root = make_ljspeech(tmp_path / "kathleen", ["arctic_a0001_1", "arctic_a0002_2", "arctic_a0003_3"], suffix=".flac")
    r = recipe("kathleen", root)
    data, messages = warnings_of(r, tmp_path / "run")
    assert messages == []
    assert sorted(c.path.name for c in data.train + data.validation) == [
        "arctic_a0001_1.flac", "arctic_a0002_2.flac", "arctic_a0003_3.flac"]


def test_ljspeech_recipe_trains_from_generated_tree(tmp_path):
    root = make_ljspeech(tmp_path / "LJSpeech-1.1", [f"LJ001-{i:04d}" for i in range(1, 13)])
    r = recipe("ljspeech", root)
    data, _ = warnings_of(r, tmp_path / "run")
    assert (len(data.train), len(data.validation)) == (4, 8)  # validation_count = 8
    crops = CropDataset(data.train, r.audio.sample_rate, r.train.segment, r.audio.hop_length)
    crop = crops[(0, 123)]
    assert crop.shape == (1, 15872) and float(crop.abs().max()) > 0.1


# ---------------------------------------------------------------- VCTK 0.92
def make_vctk(root: Path, speakers: dict[str, int]) -> Path:
    """VCTK-Corpus-0.92: wav48_silence_trimmed/<spk>/<spk>_<nnn>_mic{1,2}.flac, txt/, speaker-info.txt."""
    (root / "speaker-info.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "speaker-info.txt").write_text("ID  AGE  GENDER  ACCENTS  REGION COMMENTS\np225  23  F    English    Southern  England\n")
    for spk, n in speakers.items():
        for k in range(1, n + 1):
            for mic in (1, 2):
                tone(root / "wav48_silence_trimmed" / spk / f"{spk}_{k:03d}_mic{mic}.flac", 0.5 + 0.05 * k, 48000)
            (root / "txt" / spk).mkdir(parents=True, exist_ok=True)
            (root / "txt" / spk / f"{spk}_{k:03d}.txt").write_text("Please call Stella.\n")
    (root / "wav48_silence_trimmed" / "log.txt").write_text("not audio\n")
    return root


def test_vctk_layout_uses_mic1_of_every_speaker(tmp_path):
    root = make_vctk(tmp_path / "VCTK-Corpus-0.92", {"p225": 3, "p226": 2, "s5": 1})
    r = recipe("vctk", root)
    files = list_files(r.data)
    assert len(files) == 6
    assert all(f.path.name.endswith("_mic1.flac") for f in files)
    assert {f.path.parent.name for f in files} == {"p225", "p226", "s5"}
    # pointing at wav48_silence_trimmed itself works too
    assert len(list_files(recipe("vctk", root / "wav48_silence_trimmed").data)) == 6


def test_vctk_recipe_resamples_48k_crops_to_22k(tmp_path):
    root = make_vctk(tmp_path / "VCTK-Corpus-0.92", {"p225": 4, "p226": 4})
    r = recipe("vctk", root, "data.validation_count=2")
    survey = survey_data(r)
    assert survey.rates() == {48000: 8} and len(survey.short) == 8  # 0.55-0.7 s < 15872 / 22050 s
    data, _ = warnings_of(r, tmp_path / "run")
    assert (len(data.train), len(data.validation)) == (6, 2) and data.resampled == 8 and data.cached == 0
    crop = CropDataset(data.train, 22050, r.train.segment, 256)[(0, 7)]
    n = data.train[0].samples_at(22050)
    assert crop.shape == (1, 15872) and float(crop[0, :n].abs().max()) > 0.1
    assert float(crop[0, n + 10:].abs().max()) == 0.0  # zero-padded past the clip's end


def test_vctk_without_its_audio_folder_names_what_is_expected(tmp_path):
    (tmp_path / "VCTK").mkdir()
    with pytest.raises(AudiodiffError, match="wav48_silence_trimmed"):
        list_files(recipe("vctk", tmp_path / "VCTK").data)


# ---------------------------------------------------------------- MAESTRO v3
MAESTRO_HEADER = "canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration"


def make_maestro(root: Path) -> Path:
    rows = [  # (title, split, year, stem, rate)
        ('"Sonata in A Major, K. 331"', "train", 2018, "MIDI-Unprocessed_01_R1_2018_wav--1", 44100),
        ('"Etude Op. 10, No. 1"', "train", 2018, "MIDI-Unprocessed_02_R1_2018_wav--2", 44100),
        ("Prelude", "train", 2017, "MIDI-Unprocessed_066_PIANO066_MID--AUDIO-split_07-07-17_Piano-e_3-02_wav--3", 48000),
        ('"Ballade No. 1, Op. 23"', "validation", 2017, "MIDI-Unprocessed_067_PIANO067_MID--AUDIO-split_07-07-17_Piano-e_3-03_wav--1", 48000),
        ('"Fantasy, Op. 49"', "test", 2004, "MIDI-Unprocessed_XP_01_R1_2004_01-02_ORIG_MID--AUDIO_01_R1_2004_01_Track01_wav", 44100),
    ]
    lines = [MAESTRO_HEADER]
    for i, (title, split, year, stem, rate) in enumerate(rows):
        tone(root / str(year) / f"{stem}.wav", 2.0, rate, channels=2, freq=220.0 * (i + 1))
        lines.append(f"Frédéric Chopin,{title},{split},{year},{year}/{stem}.midi,{year}/{stem}.wav,2.0")
    (root / "maestro-v3.0.0.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "maestro-v3.0.0.json").write_text("{}")
    return root


def test_maestro_layout_reads_its_split_column(tmp_path):
    root = make_maestro(tmp_path / "maestro-v3.0.0")
    files = list_files(recipe("maestro", root).data)
    splits = {f.path.parent.name: f.split for f in files if f.split != "train"}
    assert sorted(f.split for f in files) == ["test", "train", "train", "train", "validation"]
    assert splits == {"2004": "test", "2017": "validation"}
    assert all(f.path.is_file() for f in files)


def test_maestro_recipe_uses_own_split_never_test_and_crops_at_24k(tmp_path):
    root = make_maestro(tmp_path / "maestro-v3.0.0")
    r = recipe("maestro", root)
    survey = survey_data(r)
    assert len(survey.scans) == 4 and survey.test_count == 1  # the test piece is not even read
    assert survey.channels() == {2: 4} and survey.rates() == {44100: 2, 48000: 2}
    data, _ = warnings_of(r, tmp_path / "run")
    assert len(data.train) == 3 and [c.path.parent.name for c in data.validation] == ["2017"]
    saved = json.loads((tmp_path / "run" / "split.json").read_text())
    assert len(saved["train"]) == 3 and len(saved["validation"]) == 1
    assert not any("2004" in p for p in saved["train"] + saved["validation"])
    crop = CropDataset(data.train, 24000, r.train.segment, 256)[(1, 99)]
    assert crop.shape == (1, 32768) and float(crop.abs().max()) > 0.1


def test_maestro_missing_table_is_named(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(AudiodiffError, match="maestro-v3.0.0.csv"):
        list_files(recipe("maestro", tmp_path / "m").data)


# ---------------------------------------------------------------- Speech Commands as SC09
def make_speech_commands(root: Path) -> Path:
    """speech_commands_v0.02: <word>/<speaker>_nohash_<n>.wav, validation_list.txt, testing_list.txt."""
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    val, test = [], []
    for w, word in enumerate(words):
        for s, speaker in enumerate(["0a7c2a8d", "1b4c9b89", "3bfd30e6"]):
            name = f"{word}/{speaker}_nohash_0.wav"
            tone(root / name, 1.0 if s else 0.8, 16000, freq=200.0 + 50 * w)
            if s == 1:
                val.append(name)
            elif s == 2 and w % 2 == 0:
                test.append(name)
    for other in ("yes", "dog"):  # other words of the data set: not SC09
        tone(root / other / "0a7c2a8d_nohash_0.wav", 1.0, 16000)
        val.append(f"{other}/0a7c2a8d_nohash_0.wav")
    tone(root / "_background_noise_" / "white_noise.wav", 3.0, 16000)
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    (root / "LICENSE").write_text("CC BY 4.0\n")
    return root


def test_sc09_layout_takes_digits_and_the_lists_split(tmp_path):
    root = make_speech_commands(tmp_path / "speech_commands_v0.02")
    files = list_files(recipe("sc09", root).data)
    assert len(files) == 30
    assert {f.path.parent.name for f in files} == {"zero", "one", "two", "three", "four", "five",
                                                    "six", "seven", "eight", "nine"}
    counts = {s: sum(f.split == s for f in files) for s in ("train", "validation", "test")}
    assert counts == {"train": 15, "validation": 10, "test": 5}
    by_name = {f"{f.path.parent.name}/{f.path.name}": f.split for f in files}
    assert by_name["seven/1b4c9b89_nohash_0.wav"] == "validation"
    assert by_name["eight/3bfd30e6_nohash_0.wav"] == "test"
    assert by_name["nine/3bfd30e6_nohash_0.wav"] == "train"


def test_sc09_recipe_splits_as_listed_and_pads_short_clips(tmp_path):
    root = make_speech_commands(tmp_path / "speech_commands_v0.02")
    r = recipe("sc09", root)
    survey = survey_data(r)
    assert len(survey.short) == 10  # the 0.8 s takes, under the 1 s segment
    data, messages = warnings_of(r, tmp_path / "run")
    assert messages == []
    assert (len(data.train), len(data.validation)) == (15, 10)
    assert all("1b4c9b89" in c.path.name for c in data.validation)
    crop = CropDataset(data.train, 16000, 16000, 250)[(0, 5)]
    assert crop.shape == (1, 16000) and float(crop[0, 12800:].abs().max()) == 0.0  # 0.8 s, then padding
    # skip_short drops them instead
    data, messages = warnings_of(recipe("sc09", root, "data.skip_short=true"), tmp_path / "run2")
    assert len(data.train) + len(data.validation) == 15
    assert sum(m.startswith("skipping") and "shorter than a segment" in m for m in messages) == 10
    assert messages[-1].startswith("skipped 10 of 25 files (10 shorter than a segment); all listed in")


def test_sc09_without_lists_names_the_missing_list(tmp_path):
    root = make_speech_commands(tmp_path / "sc")
    (root / "testing_list.txt").unlink()
    with pytest.raises(AudiodiffError, match="testing_list.txt"):
        list_files(recipe("sc09", root).data)


# ---------------------------------------------------------------- folder
def test_folder_is_recursive_any_format_and_skips_hidden(tmp_path):
    tone(tmp_path / "a" / "one.wav", 0.5, 16000)
    tone(tmp_path / "a" / "b" / "two.flac", 0.5, 22050)
    tone(tmp_path / "three.ogg", 0.5, 24000, subtype="VORBIS")
    tone(tmp_path / ".cache" / "hidden.wav", 0.5, 16000)
    (tmp_path / "notes.txt").write_text("no audio")
    r = load_recipe(RECIPES / "tiny.toml", ["data.source=folder", f"data.root={tmp_path}"])
    names = sorted(f.path.name for f in list_files(r.data))
    assert names == ["one.wav", "three.ogg", "two.flac"]
    assert survey_data(r).rates() == {16000: 1, 22050: 1, 24000: 1}


def test_unknown_source_is_a_recipe_error(tmp_path):
    with pytest.raises(AudiodiffError, match="data.source"):
        load_recipe(RECIPES / "tiny.toml", ["data.source=librispeech"])
