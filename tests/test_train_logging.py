"""TensorBoard events of a short run (read back with tensorboard's EventAccumulator), training
without tensorboard, and non-finite losses: skipped, then a clean stop with the checkpoint intact."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

import audiodiff.training.objective as objective
from audiodiff.checkpoint import latest_checkpoint, load_checkpoint
from audiodiff.inference import Vocoder
from audiodiff.recipe import load_recipe
from audiodiff.training import TrainOptions, Trainer

from conftest import TINY, train_run, tiny_overrides


def recipe_for(root: Path, *extra: str, **train):
    return load_recipe(TINY, tiny_overrides(root, **train) + list(extra))


def run(recipe, out: Path) -> str:
    """Train (or resume) in `out`; returns the console text."""
    return train_run(recipe, out)[1]


def test_tensorboard_events_hold_scalars_audio_and_images(tmp_path, synth_folder):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = recipe_for(synth_folder, max_steps=3, validate_every=2, checkpoint_every=2, validate_seconds=0.25)
    run(recipe, tmp_path)
    # killed after step 3 before its checkpoint: the re-run resumes at 2 and logs step 3 again
    (tmp_path / "step-00000003.pt").unlink()
    assert "Resuming from step 2" in run(recipe, tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0, "audio": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("train/loss", "train/grad_norm", "train/learning_rate", "train/steps_per_s",
                "val/log_mel_distance"):
        assert tag in tags["scalars"], tag
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]  # the killed run's step 3 is hidden
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx([m["loss"] for m in metrics if "loss" in m])
    assert [e.step for e in events.Scalars("val/log_mel_distance")] == [2, 3]
    assert events.Scalars("val/log_mel_distance")[0].value > 0
    assert {"val/audio", "val/reference"} <= set(tags["audio"])
    clip = events.Audio("val/audio")[0]
    assert clip.step == 2 and clip.sample_rate == 22050 and clip.encoded_audio_string[:4] == b"RIFF"
    assert {"val/spectrogram", "val/reference_spectrogram"} <= set(tags["images"])
    image = events.Images("val/spectrogram")[0]
    assert image.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.height == 80 and image.width > 1  # one row per mel band


def test_training_without_tensorboard_says_so_once(tmp_path, synth_folder, monkeypatch):
    monkeypatch.setattr("audiodiff.training.logging_tb.tensorboard_missing", lambda: ["tensorboard"])
    text = run(recipe_for(synth_folder, max_steps=3, validate_every=2, validate_seconds=0.25), tmp_path)
    assert text.count("TensorBoard logging is off") == 1 and "audiodiff[tensorboard]" in text
    assert (tmp_path / "step-00000003.pt").is_file() and not (tmp_path / "tensorboard").exists()


def nan_from(call: int, until: int | None = None):
    """A diffusion_loss that is NaN from its `call`-th call (0-based) up to `until` (exclusive)."""
    real, calls = objective.diffusion_loss, [0]

    def loss(*args, **kwargs):
        n, calls[0] = calls[0], calls[0] + 1
        value = real(*args, **kwargs)
        return value * float("nan") if n >= call and (until is None or n < until) else value

    return loss


def test_an_isolated_non_finite_step_is_skipped(tmp_path, synth_folder, monkeypatch):
    monkeypatch.setattr(objective, "diffusion_loss", nan_from(2, until=3))  # step 3's loss is NaN
    recipe = recipe_for(synth_folder, "train.tensorboard=false", max_steps=4)
    log = io.StringIO()
    trainer = Trainer(recipe, tmp_path, TrainOptions("cpu", Console(file=log, width=300), progress=False))
    checked = []

    def step_and_check(batches, step=trainer.train_step):
        if trainer.step != 2:  # steps done so far: this is step 3
            return step(batches)
        model = [p.detach().clone() for p in trainer.state.network.parameters()]
        ema = [p.detach().clone() for p in trainer.state.ema.parameters()]
        adam_steps = trainer.state.optimizer.state_dict()["state"][0]["step"].clone()
        result = step(batches)
        # no optimiser update, no EMA update, Adam's step count unchanged
        assert all(torch.equal(a, b) for a, b in zip(model, trainer.state.network.parameters()))
        assert all(torch.equal(a, b) for a, b in zip(ema, trainer.state.ema.parameters()))
        assert torch.equal(trainer.state.optimizer.state_dict()["state"][0]["step"], adam_steps)
        checked.append(result)
        return result

    trainer.train_step = step_and_check
    trainer.run()
    text = log.getvalue()
    assert text.count("non-finite loss, step skipped") == 1 and "step 3: non-finite loss" in text
    assert len(checked) == 1 and trainer.state.nonfinite_streak == 0  # the later steps trained again
    losses = {m["step"]: m["loss"] for m in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
              if "loss" in m}
    assert sorted(losses) == [1, 2, 3, 4] and losses[3] != losses[3]  # NaN logged for the skipped step


def test_non_finite_losses_in_a_row_stop_training_with_the_checkpoint_intact(tmp_path, synth_folder,
                                                                               monkeypatch, run_main):
    monkeypatch.setattr(objective, "diffusion_loss", nan_from(4))  # steps 1-4 fine, then NaN for ever
    out = tmp_path / "run"
    sets = tiny_overrides(synth_folder, max_steps=20, checkpoint_every=4) + ["train.tensorboard=false"]
    command = ["train", TINY, "--out-dir", out, "--device", "cpu", *[a for s in sets for a in ("--set", s)]]
    result = run_main(*command, "--set", "train.max_nonfinite=3")
    assert result.returncode == 2
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "step 7" in error[0] and "train.max_nonfinite" in error[0]
    assert str(out / "step-00000004.pt") in error[0]  # the last checkpoint, intact
    assert result.stderr.count("non-finite loss, step skipped") == 3
    # the last good checkpoint is the newest one, and it loads, for inference and for training
    assert latest_checkpoint(out) == out / "step-00000004.pt"
    data = load_checkpoint(out / "step-00000004.pt")
    assert data.step == 4 and all(torch.isfinite(t).all() for t in data.model.values())
    Vocoder.from_checkpoint(out / "step-00000004.pt")
    monkeypatch.setattr(objective, "diffusion_loss", nan_from(10 ** 9))  # the data is fine again
    result = run_main(*command, "--max-steps", "5")
    assert result.returncode == 0, result.stderr
    assert "Resuming from step 4" in result.stderr and (out / "step-00000005.pt").is_file()
