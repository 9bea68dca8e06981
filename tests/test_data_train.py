"""Training on data with bad files, every recipe builds, and the local sets' real figures."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rich.console import Console

from audiodiff.data import CropDataset, prepare_training_data, survey_data
from audiodiff.errors import AudiodiffError
from audiodiff.networks.diffwave import DiffWave
from audiodiff.recipe import load_recipe
from audiodiff.training import TrainOptions, train

from conftest import raises_naming

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "audiodiff" / "recipes"
SHARED = REPO.parent / "shared" / "data"
TINY_MODEL = ["model.residual_layers=2", "model.residual_channels=4", "model.dilation_cycle=2",
              "train.batch_size=2", "train.segment=1024", "train.num_workers=0", "train.log_every=1",
              "train.checkpoint_every=100", "train.validate_every=100", "train.validate_seconds=0.1"]


def tone(path: Path, seconds: float, rate: int, freq: float = 300.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)
    return path


def test_folder_with_a_corrupt_file_trains_and_the_warning_names_it(tmp_path):
    for i in range(10):
        tone(tmp_path / "data" / f"take{i}.wav", 0.3 + i / 20, 22050, freq=200.0 + 30 * i)
    corrupt = tmp_path / "data" / "take-corrupt.flac"
    corrupt.write_bytes(b"fLaC" + bytes(range(256)) * 4)  # a FLAC signature, then garbage
    recipe = load_recipe(RECIPES / "tiny.toml", ["data.source=folder", f"data.root={tmp_path / 'data'}",
                                                  "train.max_steps=3", *TINY_MODEL])
    log = io.StringIO()
    last = train(recipe, tmp_path / "run", TrainOptions("cpu", Console(file=log, width=300), progress=False))
    text = log.getvalue()
    assert last == tmp_path / "run" / "step-00000003.pt" and last.is_file()
    assert text.count(f"skipping {corrupt}: unreadable") == 1
    assert "skipped 1 of 11 files (1 unreadable); all listed in" in text
    assert "Data: 8 training clips, 2 validation clips (1 skipped: 1 unreadable)" in text
    assert (tmp_path / "run" / "skipped.txt").read_text().startswith(f"{corrupt}\tunreadable")


def test_training_refuses_to_start_when_too_many_files_are_bad(tmp_path):
    tone(tmp_path / "data" / "good.wav", 1.0, 22050)
    (tmp_path / "data" / "bad.wav").write_bytes(b"junk")
    recipe = load_recipe(RECIPES / "tiny.toml", ["data.source=folder", f"data.root={tmp_path / 'data'}",
                                                  "train.max_steps=1", *TINY_MODEL])
    with raises_naming(AudiodiffError, f"data.root {tmp_path / 'data'}", "data.max_bad_fraction", "50.0%"):
        train(recipe, tmp_path / "run", TrainOptions("cpu", Console(file=io.StringIO()), progress=False))
    assert not list((tmp_path / "run").glob("step-*.pt"))


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.toml")), ids=lambda p: p.stem)
def test_every_recipe_loads_and_builds_its_model(path):
    recipe = load_recipe(path)
    model = DiffWave.from_recipe(recipe)
    assert model.conditional == recipe.model.conditional
    assert recipe.train.segment % recipe.audio.hop_length == 0
    assert recipe.data.root


def test_local_recipes_point_at_shared_data_and_fit_a_cpu():
    for name, source, conditional in (("kathleen", "ljspeech", True), ("bach-piano", "folder", True),
                                      ("fsdd", "folder", False)):
        recipe = load_recipe(RECIPES / f"{name}.toml")
        assert recipe.data.root == f"../shared/data/{name}" and recipe.data.source == source
        assert recipe.model.conditional is conditional
        assert recipe.model.residual_layers * recipe.model.residual_channels ** 2 <= 30 * 64 ** 2 / 4
        assert recipe.train.batch_size * recipe.train.segment <= 65536


def test_sc09_recipe_is_diffwaves_unconditional_model():
    r = load_recipe(RECIPES / "sc09.toml")
    assert (r.model.conditional, r.model.residual_layers, r.model.residual_channels, r.model.dilation_cycle) == (
        False, 36, 256, 12)
    assert (r.diffusion.schedule, r.diffusion.steps, r.diffusion.beta_start, r.diffusion.beta_end) == (
        "linear", 200, 1e-4, 0.02)
    assert (r.audio.sample_rate, r.train.segment) == (16000, 16000)


# ---------------------------------------------------------------- the real local sets
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} is absent")


def real(name: str, *extra: str):
    return load_recipe(RECIPES / f"{name}.toml", [f"data.root={SHARED / name}", *extra])


@needs_shared
def test_kathleen_figures():
    survey = survey_data(real("kathleen"))
    assert len(survey.scans) == 1600 and not survey.bad and len(survey.usable) == 1600
    assert survey.rates() == {22050: 1600} and survey.channels() == {1: 1600}
    assert survey.seconds() / 60 == pytest.approx(81.08, abs=0.01)
    assert not survey.short


@needs_shared
def test_fsdd_figures_and_resampled_crops(tmp_path):
    recipe = real("fsdd", "data.cache_dir=")
    survey = survey_data(recipe)
    assert len(survey.scans) == 3000 and not survey.bad
    assert survey.rates() == {8000: 3000}
    assert survey.seconds() / 60 == pytest.approx(21.87, abs=0.01)
    assert len(survey.short) == 2980  # under 1 s at 16 kHz: zero-padded
    data = prepare_training_data(recipe, tmp_path / "run", print)
    assert data.resampled == 3000 and data.cached == 0 and len(data.train) == 3000
    crop = CropDataset(data.train, 16000, 16000, 250)[(123, 4)]
    clip = data.train[123]
    n = clip.samples_at(16000)
    assert crop.shape == (1, 16000) and float(crop[0, :n].abs().max()) > 1e-3
    assert float(crop[0, n + 1:].abs().max()) == 0.0


@needs_shared
def test_bach_piano_figures():
    survey = survey_data(real("bach-piano"))
    assert len(survey.scans) == 13 and not survey.bad
    assert survey.rates() == {22050: 13}
    assert survey.seconds() / 60 == pytest.approx(11.60, abs=0.01)
