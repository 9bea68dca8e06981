"""Shipped default models, their cards, and `audiodiff export` (inference-only copies)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from audiodiff.errors import CheckpointError
from audiodiff.inference import Generator, Vocoder
from audiodiff.networks.diffwave import DiffWave
from audiodiff.pretrained import (DEFAULTS, KINDS, ModelCard, default_checkpoint, model_card, model_name,
                                  resolve_checkpoint)
from audiodiff.recipe import load_recipe

from conftest import SR, TINY, raises_naming, sine

SHIPPED_LIMIT_BYTES = 20 * 10 ** 6  # issue 5: weights 20 MB at most in all


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    recipe = load_recipe(TINY, ["model.residual_layers=2", "model.residual_channels=8"])
    torch.manual_seed(0)
    net = DiffWave.from_recipe(recipe)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net(torch.zeros(1, 1, 512), torch.ones(1), net.condition(torch.zeros(1, 80, 2))).abs().mean().backward()
    opt.step()
    path = tmp_path_factory.mktemp("train") / "step-00000003.pt"
    return save_checkpoint(path, Checkpoint(recipe=recipe, model=net.state_dict(), ema=net.state_dict(), step=3,
                                            optimizer=opt.state_dict()))


def test_export_is_small_half_precision_and_vocodes_alike(tmp_path, trained, run_main):
    out = tmp_path / "voc.pt"
    result = run_main("export", trained, "-o", out, "--default-steps", "4")
    assert result.returncode == 0, result.stderr
    data = load_checkpoint(out)
    assert data.model == {} and data.optimizer is None and data.defaults.steps == 4 and data.step == 3
    assert all(v.dtype == torch.float16 for v in data.ema.values() if v.is_floating_point())
    assert out.stat().st_size < trained.stat().st_size / 3  # no raw weights, no Adam moments, 2 bytes a weight
    full, half = Vocoder.from_checkpoint(trained), Vocoder.from_checkpoint(out)
    assert half.plan().steps == 4
    mel = full.mel(torch.from_numpy(sine(0.2)).float()).cpu()
    a, b = full.vocode(mel, steps=4, seed=2), half.vocode(mel, seed=2)
    assert a.shape == b.shape and float((a - b).abs().max()) < 2e-2
    with pytest.raises(CheckpointError, match="inference-only"):
        Vocoder.from_checkpoint(out, ema=False)


def test_export_refuses_to_overwrite_its_input(trained, run_main):
    result = run_main("export", trained, "-o", trained)
    assert result.returncode == 2 and "is the input checkpoint" in result.stderr


def test_bad_model_card_is_one_line(tmp_path):
    card = tmp_path / "vocoder.toml"
    card.write_text('name = "x"\ncolour = "blue"\n')
    with raises_naming(CheckpointError, card, "colour"):
        ModelCard.load(card)


def test_a_checkpoint_argument_is_a_file_or_a_shipped_name(tmp_path, trained, monkeypatch):
    assert resolve_checkpoint(trained) == trained and model_name(trained) == str(trained)
    with raises_naming(CheckpointError, tmp_path / "nothing.pt"):
        resolve_checkpoint(tmp_path / "nothing.pt")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vocoder").write_bytes(b"x")  # a file of that name wins over the shipped model
    assert resolve_checkpoint("vocoder") == tmp_path.joinpath("vocoder").relative_to(tmp_path)


# ---- the models shipped in this repository ----

shipped = pytest.mark.skipif(not all(p.is_file() for p in DEFAULTS.values()), reason="default models not shipped")


@shipped
def test_shipped_models_fit_the_size_limit_and_have_cards():
    assert sum(DEFAULTS[k].stat().st_size for k in KINDS) <= SHIPPED_LIMIT_BYTES
    for kind in KINDS:
        card = model_card(kind)
        assert card is not None and card.name and card.license and card.training.startswith("audiodiff ")
        data = load_checkpoint(default_checkpoint(kind))
        assert data.inference_only and data.step > 0 and data.defaults.steps
    assert Vocoder.from_checkpoint(DEFAULTS["vocoder"]).defaults.schedules  # ships searched schedules (issue 8)


@shipped
def test_shipped_models_are_found_by_name():
    for kind in KINDS:
        assert resolve_checkpoint(kind) == DEFAULTS[kind]
        assert model_name(DEFAULTS[kind]) == model_card(kind).name


@shipped
def test_vocode_and_sample_work_without_checkpoint(tmp_path, run_main):
    wav = tmp_path / "in.wav"
    sf.write(wav, sine(0.5), SR, subtype="PCM_16")
    voc = run_main("vocode", wav, "-o", tmp_path / "out.wav")
    assert voc.returncode == 0, voc.stderr
    assert f"shipped default vocoder '{model_card('vocoder').name}'" in voc.stderr
    out, rate = sf.read(tmp_path / "out.wav")
    assert rate == SR and len(out) == round(0.5 * SR) and np.isfinite(out).all()
    gen = run_main("sample", "--seconds", "0.25", "--steps", "3", "-o", tmp_path / "s.wav")
    assert gen.returncode == 0, gen.stderr
    assert f"shipped default generator '{model_card('generator').name}'" in gen.stderr
    info = sf.info(str(tmp_path / "s.wav"))
    assert info.frames == round(0.25 * Generator.from_checkpoint(DEFAULTS["generator"]).sample_rate)


@shipped
def test_info_without_checkpoint_lists_both_defaults(run_main):
    result = run_main("info")
    assert result.returncode == 0, result.stderr
    for kind in KINDS:
        card = model_card(kind)
        assert f"Default {kind}" in result.stdout and card.name in result.stdout
        assert card.license in result.stdout.replace("\n", " ")
        assert (f"recipe: {card.recipe} (fine-tune: audiodiff train {card.recipe} --init {kind}"
                in " ".join(result.stdout.split()))
    assert "searched 4-step schedule" in result.stdout


@shipped
def test_fine_tuning_the_shipped_vocoder_by_name_keeps_its_defaults(tmp_path, run_main, synth_folder):
    """`train kathleen --init vocoder`: one step on other audio; `vocode -c` on the result
    runs with the shipped model's plan and says where it came from."""
    out = tmp_path / "ft"
    sets = ["data.source='folder'", "data.validation_count=1", "train.batch_size=1", "train.segment=4096",
            "train.num_workers=0", "train.validate_seconds=0.25", "train.tensorboard=false", "train.log_every=1"]
    shipped_vocoder = Vocoder.from_checkpoint(DEFAULTS["vocoder"])
    step = shipped_vocoder.step
    recipe = model_card("vocoder").recipe  # the recipe the shipped vocoder was trained with
    result = run_main("train", recipe, "--data", synth_folder, "--init", "vocoder", "--out-dir", out,
                      "--max-steps", step + 1, "--device", "cpu", *[x for s in sets for x in ("--set", s)])
    assert result.returncode == 0, result.stderr
    name = model_card("vocoder").name
    assert f"defaults inherited from {name}" in " ".join(result.stderr.split())
    tuned = Vocoder.from_checkpoint(out / f"step-{step + 1:08d}.pt")
    assert tuned.plan() == shipped_vocoder.plan() and tuned.defaults.inherited_from == name
    assert tuned.defaults.schedules.keys() == shipped_vocoder.defaults.schedules.keys()
    clip = tmp_path / "in.wav"
    sf.write(clip, sine(0.2), SR, subtype="PCM_16")
    voc = run_main("vocode", "-c", out / f"step-{step + 1:08d}.pt", clip, "-o", tmp_path / "out.wav")
    first = " ".join(voc.stderr.split())
    assert voc.returncode == 0, voc.stderr
    assert f"{shipped_vocoder.plan().steps} steps, searched schedule" in first and "mel gain adjustment" in first
    assert f"inherited from {name}" in first
