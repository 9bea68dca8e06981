"""Training options: mixed precision, gradient accumulation, the learning-rate schedule, and
their validation; --precision for sampling."""
from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from audiodiff.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from audiodiff.errors import AudiodiffError, RecipeError
from audiodiff.inference import Vocoder
from audiodiff.training.lr_schedule import learning_rate_at
from audiodiff.networks.diffwave import DiffWave
from audiodiff.recipe import TrainConfig, load_recipe
from audiodiff.training import TrainOptions, Trainer

from conftest import TINY, raises_naming, read_metrics as records, tiny_overrides, train_run as run


def recipe_for(root: Path, *extra: str, **train):
    return load_recipe(TINY, tiny_overrides(root, **train) + ["train.tensorboard=false", *extra])


def test_bf16_training_runs_on_cpu(tmp_path, synth_folder):
    last, text = run(recipe_for(synth_folder, precision="bf16", max_steps=3), tmp_path / "bf16")
    assert "precision bf16" in text
    bf16 = {r["step"]: r["loss"] for r in records(tmp_path / "bf16") if "loss" in r}
    assert sorted(bf16) == [1, 2, 3] and all(0.0 < v < 2.0 for v in bf16.values())
    data = load_checkpoint(last)
    assert data.extra["precision"] == "bf16"
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in data.model.values())
    # the first step sees the same weights, crops and noise as in fp32: only rounding differs
    run(recipe_for(synth_folder, max_steps=1), tmp_path / "fp32")
    fp32 = {r["step"]: r["loss"] for r in records(tmp_path / "fp32") if "loss" in r}
    assert bf16[1] == pytest.approx(fp32[1], rel=0.05)


def test_fp16_needs_cuda(tmp_path, synth_folder):
    with raises_naming(AudiodiffError, "train.precision", "fp16"):
        Trainer(recipe_for(synth_folder, precision="fp16"), tmp_path, TrainOptions("cpu", progress=False))


@pytest.mark.parametrize("extra, atol", [
    ((), 2e-5),
    # the chain through 2 gain-adjusted steps rounds differently split; Adam turns that into
    # weight differences up to 6e-5 after 3 steps (5e-3 when the chain noise was drawn per share)
    (("train.infer_loss_weight=0.5", "train.infer_steps=2", "train.infer_gain_adjust=true"), 2e-4),
], ids=["noise-loss", "infer-loss"])
def test_gradient_accumulation_equals_the_larger_batch(tmp_path, synth_folder, extra, atol):
    """Each crop meets the same noise split or whole: the infer loss's chain noise too (infer_loss.py)."""
    run(recipe_for(synth_folder, *extra, batch_size=2, grad_accum=2, max_steps=3), tmp_path / "accum")
    run(recipe_for(synth_folder, *extra, batch_size=4, max_steps=3), tmp_path / "whole")
    a = load_checkpoint(tmp_path / "accum" / "step-00000003.pt")
    b = load_checkpoint(tmp_path / "whole" / "step-00000003.pt")
    for key in a.model:
        torch.testing.assert_close(a.model[key], b.model[key], rtol=1e-4, atol=atol, msg=key)
    la = [r["loss"] for r in records(tmp_path / "accum") if "loss" in r]
    lb = [r["loss"] for r in records(tmp_path / "whole") if "loss" in r]
    assert la == pytest.approx(lb, rel=1e-5)
    assert [r["global_batch"] for r in records(tmp_path / "accum") if "global_batch" in r] == [4]


def test_learning_rate_schedule():
    cfg = TrainConfig(learning_rate=1e-3, warmup_steps=10, lr_decay="cosine", decay_steps=100,
                      min_learning_rate=1e-5, max_steps=1000)
    assert learning_rate_at(0, cfg) == pytest.approx(1e-4)
    assert learning_rate_at(9, cfg) == pytest.approx(1e-3)
    assert learning_rate_at(10, cfg) == pytest.approx(1e-3)
    assert learning_rate_at(60, cfg) == pytest.approx((1e-3 + 1e-5) / 2)
    assert learning_rate_at(110, cfg) == pytest.approx(1e-5)
    assert learning_rate_at(900, cfg) == pytest.approx(1e-5)  # the floor is kept
    lin = replace(cfg, lr_decay="linear", decay_steps=0)  # 0: decay until max_steps
    assert learning_rate_at(10 + 495, lin) == pytest.approx((1e-3 + 1e-5) / 2)
    assert learning_rate_at(1000, lin) == pytest.approx(1e-5)
    const = replace(cfg, lr_decay="none", warmup_steps=0)
    assert {learning_rate_at(s, const) for s in (0, 50, 999)} == {1e-3}
    rates = [learning_rate_at(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))  # decays monotonically
    late = replace(cfg, decay_start=500)  # constant until step 500, then 100 steps of decay
    assert learning_rate_at(499, late) == pytest.approx(1e-3)
    assert learning_rate_at(550, late) == pytest.approx((1e-3 + 1e-5) / 2)
    assert learning_rate_at(600, late) == pytest.approx(1e-5)
    assert learning_rate_at(5, late) == pytest.approx(6e-4)  # the warm-up is unchanged
    until_end = replace(late, decay_steps=0)
    assert learning_rate_at(750, until_end) == pytest.approx((1e-3 + 1e-5) / 2)


def test_the_scheduled_rate_is_used_and_logged(tmp_path, synth_folder):
    recipe = recipe_for(synth_folder, max_steps=3, learning_rate=1e-3, warmup_steps=2)
    trainer = Trainer(recipe, tmp_path, TrainOptions("cpu", Console(file=io.StringIO()), progress=False))
    trainer.run()
    logged = [r["learning_rate"] for r in records(tmp_path) if "learning_rate" in r]
    assert logged == pytest.approx([5e-4, 1e-3, 1e-3])
    assert trainer.state.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


@pytest.mark.parametrize("override, key", [
    ("train.precision='fp8'", "train.precision"),
    ("train.lr_decay='step'", "train.lr_decay"),
    ("train.grad_accum=0", "train.grad_accum"),
    ("train.warmup_steps=-1", "train.warmup_steps"),
    ("train.decay_start=-5", "train.decay_start"),
    ("train.min_learning_rate=0.5", "train.min_learning_rate"),
    ("train.max_nonfinite=0", "train.max_nonfinite"),
    ("train.tensorboard=1", "train.tensorboard"),
])
def test_bad_training_options_fail_on_load(override, key):
    with pytest.raises(RecipeError) as info:
        load_recipe(TINY, [override])
    message = str(info.value)
    assert key in message and str(TINY) in message and "\n" not in message


def test_new_keys_have_defaults_so_old_recipes_load():
    cfg = load_recipe(TINY).train
    assert (cfg.precision, cfg.grad_accum, cfg.warmup_steps, cfg.lr_decay, cfg.max_nonfinite,
            cfg.tensorboard) == ("fp32", 1, 0, "none", 20, True)


def test_sampling_precision(tmp_path, run_main):
    recipe = load_recipe(TINY, ["data.root='x'"])
    network = DiffWave.from_recipe(recipe)
    with torch.no_grad():  # DiffWave starts with a zero output layer: give it some weights
        for p in network.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    mel = torch.full((recipe.audio.n_mels, 8), -5.0)
    fp32 = Vocoder(network, recipe, device="cpu").vocode(mel, steps=2, seed=0)
    bf16 = Vocoder(network, recipe, device="cpu", precision="bf16").vocode(mel, steps=2, seed=0)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    assert torch.isfinite(bf16).all() and not torch.equal(bf16, fp32)
    assert float((bf16 - fp32).abs().max()) < 0.1 * max(1.0, float(fp32.abs().max()))
    with pytest.raises(AudiodiffError, match="precision fp16 needs a CUDA device"):
        Vocoder(network, recipe, device="cpu", precision="fp16")
    # the CLI: one line, exit 2
    ckpt = save_checkpoint(tmp_path / "m.pt", Checkpoint(recipe=recipe, model=network.state_dict(),
                                                         ema=network.state_dict(), step=0))
    np.save(tmp_path / "mel.npy", mel.numpy())
    result = run_main("vocode", tmp_path / "mel.npy", "-c", ckpt, "--precision", "fp16", "--device", "cpu",
                      "-o", tmp_path / "out.wav")
    assert result.returncode == 2
    assert "fp16 needs a CUDA device" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_loss_scaling_path_of_fp16(tmp_path, synth_folder):
    """fp16 needs CUDA; its gradient scaler's path (scale, unscale, clip, step, update, saved
    and restored with the checkpoint) is exercised here with a CPU scaler under bf16."""
    def trainer(out: Path, steps: int, scaled: bool) -> Trainer:
        t = Trainer(recipe_for(synth_folder, precision="bf16", max_steps=steps), out,
                    TrainOptions("cpu", Console(file=io.StringIO()), progress=False))
        if scaled:
            t.state.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=2)
        return t

    plain = trainer(tmp_path / "plain", 3, scaled=False)
    plain.run()
    trainer(tmp_path / "scaled", 2, scaled=True).run()
    saved = load_checkpoint(tmp_path / "scaled" / "step-00000002.pt").extra["grad_scaler"]
    assert saved["scale"] == 2.0 ** 11  # grown once after 2 finite steps
    resumed = trainer(tmp_path / "scaled", 3, scaled=True)
    resumed.run()
    assert resumed.state.scaler.get_scale() == 2.0 ** 11
    # scaling by a power of two and back changes nothing
    for a, b in zip(plain.state.network.parameters(), resumed.state.network.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
