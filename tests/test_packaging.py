"""What an installed package brings without a clone: its version, the shipped recipes (by
name, listed by `audiodiff recipes`, pointed at any folder with `--data`) and the example
clip; and the metadata that makes a wheel of it."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import soundfile as sf

import audiodiff
from audiodiff.audio import load_audio
from audiodiff.checkpoint import load_checkpoint
from audiodiff.errors import RecipeError
from audiodiff.recipe import SHIPPED_DIR, load_recipe, resolve_recipe, shipped_names, shipped_recipes

from conftest import REPO_ROOT, TINY, tiny_overrides


def user_error(result) -> str:
    """The one `error:` line of an exit-2 run without a traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def quick_sets(root: Path) -> list[str]:
    """tiny_overrides as --set arguments, less data.root (given with --data instead)."""
    items = [item for item in tiny_overrides(root) if not item.startswith("data.root")]
    return [arg for item in items for arg in ("--set", item)]


# ---------------------------------------------------------------------- version and metadata
def test_version_flag_prints_the_package_version(run_main):
    result = run_main("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"audiodiff {audiodiff.__version__}"


def test_pyproject_has_one_version_source_and_full_metadata():
    project_toml = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = project_toml["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert project_toml["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "audiodiff.__version__"}
    assert project["name"] != "audiodiff"  # that name on the package index is another project
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert "Apache License" in (REPO_ROOT / "LICENSE").read_text(encoding="utf-8")
    assert project["authors"] and project["keywords"] and project["classifiers"] and project["urls"]
    assert project["scripts"] == {"audiodiff": "audiodiff.cli:main"}
    assert not any(c.startswith("License ::") for c in project["classifiers"])  # PEP 639: the expression only
    data = project_toml["tool"]["setuptools"]["package-data"]
    assert "*.toml" in data["audiodiff.recipes"] and {"*.pt", "*.flac"} <= set(data["audiodiff.pretrained"])


# ---------------------------------------------------------------------- recipes by name
def test_recipes_command_lists_names_data_and_time(run_main):
    result = run_main("recipes")
    assert result.returncode == 0, result.stderr
    for name, root in (("tiny", "../shared/data/ljspeech-mini"), ("kathleen", "../shared/data/kathleen"),
                       ("kathleen-frames", "../shared/data/kathleen")):
        line = next(line for line in result.stdout.splitlines() if f" {name} " in line)
        assert root in line, line
    assert "--data DIR" in result.stdout


def test_every_shipped_recipe_says_what_it_trains_and_how_long():
    infos = shipped_recipes()
    assert {"tiny", "kathleen", "kathleen-frames"} <= {i.name for i in infos}
    for info in infos:
        lines = info.path.read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith("# ") and lines[1].startswith("# time: "), info.name
        assert "CPU" in info.time and "GPU" in info.time, info.name
        assert info.summary.endswith("."), info.name  # a whole sentence, not a wrapped fragment
        assert info.data_root, info.name


@pytest.mark.parametrize("name", shipped_names())
def test_recipe_by_name_is_the_recipe_by_path(name):
    assert resolve_recipe(name) == SHIPPED_DIR / f"{name}.toml"
    assert load_recipe(name) == load_recipe(SHIPPED_DIR / f"{name}.toml")


def test_an_existing_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("tiny").write_text(TINY.read_text(encoding="utf-8").replace("batch_size = 4", "batch_size = 3"))
    assert resolve_recipe("tiny") == Path("tiny") and load_recipe("tiny").train.batch_size == 3


def test_an_unknown_recipe_name_lists_the_shipped_ones(tmp_path):
    with pytest.raises(RecipeError) as info:
        load_recipe("kathlene")
    message = str(info.value)
    assert "kathlene" in message and "kathleen" in message and "audiodiff recipes" in message
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "absent.toml")


def test_train_by_name_with_data_is_training_the_recipe_file(tmp_path, run_main, synth_folder):
    out = tmp_path / "run"
    result = run_main("train", "tiny", "--data", synth_folder, "--out-dir", out, "--max-steps", 2, "--device", "cpu",
                      *quick_sets(synth_folder))
    assert result.returncode == 0, result.stderr
    trained = load_checkpoint(out / "step-00000002.pt").recipe
    by_path = load_recipe(TINY, [*tiny_overrides(synth_folder), "train.max_steps=2"])
    assert trained == by_path and trained.data.root == str(synth_folder)


def test_data_check_and_bench_take_a_recipe_name(tmp_path, run_main, synth_folder):
    result = run_main("data", "check", "tiny", "--data", synth_folder)
    assert result.returncode == 0, result.stderr
    assert str(synth_folder) in result.stdout
    target = tmp_path / "bench.json"
    result = run_main("bench", "--recipe", "tiny", "--seconds", 0.25, "--steps", "1", "--runs", 1, "--warmup", 0,
                      "--threads", 1, "--device", "cpu", "-o", target)
    assert result.returncode == 0, result.stderr
    assert json.loads(target.read_text())["meta"]["recipe"] == str((SHIPPED_DIR / "tiny.toml").resolve())


def test_data_and_set_data_root_together_are_refused(run_main, tmp_path):
    error = user_error(run_main("data", "check", "tiny", "--data", tmp_path, "--set", f"data.root={tmp_path}"))
    assert "--data" in error and "data.root" in error


@pytest.mark.parametrize("command", ["train", "data check"])
def test_a_missing_data_folder_names_it_and_says_how_to_point_elsewhere(command, tmp_path, run_main):
    missing = tmp_path / "nowhere"
    error = user_error(run_main(*command.split(), "tiny", "--data", missing, "--out-dir", tmp_path / "run")
                       if command == "train" else run_main(*command.split(), "tiny", "--data", missing))
    assert str(missing) in error and "--data DIR" in error


def test_a_shipped_recipe_reads_a_relative_root_from_the_current_folder(tmp_path, run_main):
    error = user_error(run_main("data", "check", "kathleen", cwd=tmp_path))
    assert "../shared/data/kathleen" in error and str(tmp_path) in error and "--data DIR" in error


# ---------------------------------------------------------------------- the example clip
def test_the_example_clip_is_short_cc0_speech():
    path = audiodiff.example_path()
    info = sf.info(str(path))
    assert path.is_file() and path.stat().st_size < 1_000_000
    assert (info.format, info.samplerate, info.channels) == ("FLAC", 22050, 1)
    assert 2.0 < info.frames / info.samplerate < 6.0
    wav = load_audio(path, 22050)
    assert wav.shape == (info.frames,) and 0.05 < abs(wav).max() <= 1.0
    card = (path.parent / "README.md").read_text(encoding="utf-8")
    assert "CC0" in card and "rhasspy/dataset-voice-kathleen" in card and "arctic_a0003_1592748511" in card


def test_vocode_the_example_from_the_command_line(tmp_path, run_main):
    out = tmp_path / "out.wav"
    result = run_main("vocode", "--example", "-o", out, "--device", "cpu", "--threads", 1)
    assert result.returncode == 0, result.stderr
    clip, made = sf.info(str(audiodiff.example_path())), sf.info(str(out))
    assert made.samplerate == clip.samplerate and made.frames == clip.frames


def test_vocode_without_inputs_says_what_to_give(run_main):
    assert "--example" in user_error(run_main("vocode"))
