"""The checkpoint format: atomic save, safe load, one-line errors naming the file."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from audiodiff.checkpoint import (FORMAT, FORMAT_VERSION, Checkpoint, checkpoint_name, export_inference_copy,
                                  latest_checkpoint, load_checkpoint, save_checkpoint)
from audiodiff.errors import AudiodiffError, CheckpointError
from audiodiff.inference_defaults import InferenceDefaults
from audiodiff.networks.diffwave import DiffWave
from audiodiff.pretrained import DEFAULTS
from audiodiff.recipe import Recipe, load_recipe
from audiodiff.searched_schedule import SearchedSchedule, current_metric_name

from conftest import TINY


class Arbitrary:
    """Any picklable object that is not a plain container: weights_only loading must refuse it."""

    def __init__(self):
        self.payload = [1, 2, 3]


@pytest.fixture
def tiny_state():
    recipe = load_recipe(TINY, ["model.residual_layers=2", "model.residual_channels=4"])
    torch.manual_seed(0)
    net = DiffWave.from_recipe(recipe)
    return recipe, net


def test_round_trip(tmp_path, tiny_state):
    recipe, net = tiny_state
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net(torch.zeros(1, 1, 256), torch.ones(1), net.condition(torch.zeros(1, 80, 1))).sum().backward()
    opt.step()
    ema = {k: v + 1 for k, v in net.state_dict().items()}
    path = save_checkpoint(tmp_path / "run" / "step-00000007.pt", Checkpoint(
        recipe=recipe, model=net.state_dict(), ema=ema, step=7, optimizer=opt.state_dict(), extra={"note": "hello"}))
    assert path.is_file()
    assert sorted(p.name for p in path.parent.iterdir()) == ["step-00000007.pt"]  # no temp files
    raw = torch.load(path, weights_only=True)  # on disk: plain types and tensors
    assert raw["format"] == FORMAT and raw["version"] == FORMAT_VERSION and raw["recipe"] == recipe.to_dict()
    data = load_checkpoint(path)
    assert data.step == 7
    assert data.recipe == recipe
    assert data.extra == {"note": "hello"}
    assert data.defaults == InferenceDefaults() and data.defaults.empty and not data.inference_only
    for key, value in net.state_dict().items():
        assert torch.equal(data.model[key], value)
        assert torch.equal(data.ema[key], value + 1)
    fresh = torch.optim.AdamW(net.parameters(), lr=1e-3)
    fresh.load_state_dict(data.optimizer)
    assert fresh.state_dict()["state"][0]["step"] == 1
    rebuilt = DiffWave.from_recipe(data.recipe)
    rebuilt.load_state_dict(data.model)  # strict: every key fits


def test_inference_only_checkpoint(tmp_path, tiny_state):
    recipe, net = tiny_state
    path = save_checkpoint(tmp_path / "c.pt", Checkpoint(recipe=recipe, model=net.state_dict(),
                                                         ema=net.state_dict(), step=0))
    data = load_checkpoint(path)
    assert data.optimizer is None and data.extra == {}
    exported = load_checkpoint(export_inference_copy(data, tmp_path / "small.pt"))
    assert exported.inference_only and exported.optimizer is None and exported.step == 0
    assert all(v.dtype == torch.float16 for v in exported.ema.values() if v.is_floating_point())


def assert_fails_naming(path, *words):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    for word in words:
        assert word in message
    assert isinstance(info.value, AudiodiffError)
    return message


def test_missing_file(tmp_path):
    assert_fails_naming(tmp_path / "nope.pt", "not found")


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"\x00\x01 definitely not a checkpoint " * 50)
    assert_fails_naming(path)


def test_truncated_checkpoint(tmp_path, tiny_state):
    recipe, net = tiny_state
    good = save_checkpoint(tmp_path / "good.pt", Checkpoint(recipe=recipe, model=net.state_dict(),
                                                            ema=net.state_dict(), step=1))
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert_fails_naming(cut)


def test_dict_without_format_key(tmp_path, tiny_state):
    _, net = tiny_state
    path = tmp_path / "plain.pt"
    torch.save({"model": net.state_dict(), "step": 3}, path)
    assert_fails_naming(path, "not an audiodiff checkpoint")


def test_state_dict_only(tmp_path, tiny_state):
    _, net = tiny_state
    path = tmp_path / "weights.pt"
    torch.save(net.state_dict(), path)
    assert_fails_naming(path, "not an audiodiff checkpoint")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "object.pt"
    torch.save({"format": FORMAT, "thing": Arbitrary()}, path)
    assert_fails_naming(path, "not an audiodiff checkpoint")
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(Arbitrary()))
    assert_fails_naming(raw)


def test_missing_keys_and_newer_version(tmp_path, tiny_state):
    recipe, net = tiny_state
    path = tmp_path / "partial.pt"
    torch.save({"format": FORMAT, "version": 1, "step": 0, "recipe": recipe.to_dict()}, path)
    assert_fails_naming(path, "model", "ema")
    newer = tmp_path / "newer.pt"
    torch.save({"format": FORMAT, "version": FORMAT_VERSION + 1, "step": 0, "recipe": recipe.to_dict(),
                "model": {}, "ema": {}}, newer)
    assert_fails_naming(newer, "newer")


def test_bad_recipe_inside(tmp_path, tiny_state):
    recipe, net = tiny_state
    table = recipe.to_dict()
    table["train"]["batch_size"] = "sixteen"
    path = tmp_path / "badrecipe.pt"
    torch.save({"format": FORMAT, "version": 1, "step": 0, "recipe": table, "model": {}, "ema": {}}, path)
    assert_fails_naming(path, "train.batch_size")


def test_failed_save_leaves_nothing(tmp_path, tiny_state):
    recipe, net = tiny_state
    target = tmp_path / "c.pt"
    with pytest.raises((pickle.PicklingError, AttributeError)):
        # a lambda cannot be pickled: torch.save fails half-way through writing
        save_checkpoint(target, Checkpoint(recipe=recipe, model=net.state_dict(), ema=net.state_dict(), step=0,
                                           extra={"bad": lambda: None}))
    assert list(tmp_path.iterdir()) == []


def test_latest_checkpoint_and_name(tmp_path):
    assert checkpoint_name(42) == "step-00000042.pt"
    assert latest_checkpoint(tmp_path) is None
    for step in (5, 100, 20):
        (tmp_path / checkpoint_name(step)).write_bytes(b"x")
    (tmp_path / "other.pt").write_bytes(b"x")
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000100.pt"


def test_random_bytes_always_give_the_one_line_error(tmp_path):
    """Damaged files make torch's unpickler raise UnpicklingError, IndexError, KeyError or
    UnicodeDecodeError depending on the bytes: every one is a CheckpointError."""
    path = tmp_path / "garbage.pt"
    for seed in range(300):
        path.write_bytes(np.random.default_rng(seed).bytes(2000))
        with pytest.raises(CheckpointError, match="garbage.pt: ") as info:
            load_checkpoint(path)
        assert "\n" not in str(info.value)


SEARCHED = {"betas": [0.001, 0.5], "sampler": "ddim", "eta": 0.5, "metric": "pesq", "score": 2.0, "clips": 5,
            "gain_adjust": True, "guard": {"logmel": {"score": 0.25, "bound": 0.22, "met": False}}}


def same_payload(a, b) -> bool:
    """Equal nested dicts/lists of plain values and tensors (tensors by value and dtype)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_payload(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_payload(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def with_current_metric_names(payload: dict) -> dict:
    """`payload` with its searched schedules' legacy metric names (pesq, logmel, mrstft)
    renamed to eval's keys, as loading a checkpoint renames them; nothing else changed."""
    out = dict(payload)
    schedules = {}
    for count, found in payload.get("schedules", {}).items():
        found = dict(found, metric=current_metric_name(found["metric"]))
        if "guard" in found:
            found["guard"] = {current_metric_name(k): v for k, v in found["guard"].items()}
        schedules[count] = found
    if "schedules" in payload:
        out["schedules"] = schedules
    return out


def test_a_file_in_the_old_dict_layout_loads_and_saves_back_unchanged(tmp_path, tiny_state):
    """A checkpoint written before the Checkpoint dataclass: the same plain dict, with
    its inference defaults as flat keys. It loads into typed fields, and writing it
    again gives the very same dict."""
    recipe, net = tiny_state
    old = {"format": FORMAT, "version": 1, "step": 24, "recipe": recipe.to_dict(), "model": {},
           "ema": {k: v.half() for k, v in net.state_dict().items()}, "optimizer": None,
           "extra": {"global_batch": 4, "grad_scaler": {}}, "schedules": {"2": SEARCHED},
           "default_steps": 2, "default_refine": 0, "default_gain_adjust": True}
    path = tmp_path / "old.pt"
    torch.save(old, path)
    ckpt = load_checkpoint(path)
    assert (ckpt.step, ckpt.recipe, ckpt.optimizer, ckpt.extra) == (24, recipe, None, old["extra"])
    assert ckpt.inference_only and all(torch.equal(ckpt.ema[k], v) for k, v in old["ema"].items())
    assert ckpt.defaults == InferenceDefaults(steps=2, gain_adjust=True, refine=0,
                                              schedules={2: SearchedSchedule.from_dict(SEARCHED)})
    again = save_checkpoint(tmp_path / "again.pt", ckpt)
    saved = torch.load(again, weights_only=True)
    assert saved["schedules"]["2"]["metric"] == "pesq_wb" and set(saved["schedules"]["2"]["guard"]) == {"log_mel"}
    assert same_payload(saved, with_current_metric_names(old))


def test_inference_defaults_round_trip(tmp_path, tiny_state):
    recipe, net = tiny_state
    found = SearchedSchedule.from_dict(SEARCHED)
    defaults = InferenceDefaults(steps=2, gain_adjust=False, refine=3, schedules={2: found}).inherited("parent.pt")
    path = save_checkpoint(tmp_path / "c.pt", Checkpoint(recipe=recipe, model={}, ema=net.state_dict(), step=5,
                                                         defaults=defaults))
    assert load_checkpoint(path).defaults == defaults
    raw = torch.load(path, weights_only=True)
    assert raw["defaults_inherited_from"] == "parent.pt" and raw["schedules"]["2"]["inherited_from"] == "parent.pt"
    assert (raw["default_steps"], raw["default_gain_adjust"], raw["default_refine"]) == (2, False, 3)


@pytest.mark.parametrize("key, value", [("default_steps", 0), ("default_steps", "4"), ("default_refine", -1),
                                        ("default_gain_adjust", "yes"), ("defaults_inherited_from", 3)])
def test_a_bad_inference_default_names_its_key(tmp_path, tiny_state, key, value):
    recipe, net = tiny_state
    path = tmp_path / "bad.pt"
    torch.save({"format": FORMAT, "version": 1, "step": 0, "recipe": recipe.to_dict(), "model": {},
                "ema": net.state_dict(), key: value}, path)
    assert_fails_naming(path, key)


@pytest.mark.parametrize("kind", ["vocoder", "generator"])
def test_the_shipped_files_load_and_save_back_unchanged(tmp_path, kind):
    if not DEFAULTS[kind].is_file():
        pytest.skip(f"no shipped {kind}")
    original = torch.load(DEFAULTS[kind], weights_only=True)
    again = torch.load(save_checkpoint(tmp_path / "again.pt", load_checkpoint(DEFAULTS[kind])), weights_only=True)
    # the recipe is written in today's full form (keys added since take their defaults): the same Recipe
    assert Recipe.from_dict(again.pop("recipe")) == Recipe.from_dict(original.pop("recipe"))
    assert same_payload(again, with_current_metric_names(original))
