"""The trainer: determinism, exact resume, checkpoint pruning, run-folder safety, validation output."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch

from audiodiff.checkpoint import export_inference_copy, load_checkpoint
from audiodiff.errors import AudiodiffError
from audiodiff.inference import Vocoder
from audiodiff.recipe import load_recipe
from audiodiff.searched_schedule import SearchedSchedule
from audiodiff.training import TrainOptions, Trainer

from conftest import TINY, raises_naming, read_metrics as metrics, tiny_overrides, train_run as run


def losses(out: Path) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in metrics(out) if "loss" in m}


def grad_norms(out: Path) -> dict[int, float]:
    return {m["step"]: m["grad_norm"] for m in metrics(out) if "grad_norm" in m}


def recipe_for(root: Path, *extra: str, **train):
    return load_recipe(TINY, tiny_overrides(root, **train) + list(extra))


def test_same_seed_same_losses(tmp_path, synth_folder):
    recipe = recipe_for(synth_folder, max_steps=6)
    run(recipe, tmp_path / "a")
    run(recipe, tmp_path / "b")
    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert sorted(a) == [1, 2, 3, 4, 5, 6]
    assert a == b  # bit-identical, not merely close
    assert grad_norms(tmp_path / "a") == grad_norms(tmp_path / "b")
    assert all(0.0 < v < 2.0 for v in a.values())
    wa = load_checkpoint(tmp_path / "a" / "step-00000006.pt")
    wb = load_checkpoint(tmp_path / "b" / "step-00000006.pt")
    for key in wa.model:
        assert torch.equal(wa.model[key], wb.model[key])
        assert torch.equal(wa.ema[key], wb.ema[key])


def test_different_seed_different_losses(tmp_path, synth_folder):
    run(recipe_for(synth_folder, max_steps=3, seed=0), tmp_path / "a")
    run(recipe_for(synth_folder, max_steps=3, seed=1), tmp_path / "b")
    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert a[1] != b[1] and a[3] != b[3]


def test_resume_follows_the_uninterrupted_run(tmp_path, synth_folder):
    # uninterrupted: 8 steps
    run(recipe_for(synth_folder, max_steps=8, checkpoint_every=2), tmp_path / "full")
    # interrupted at 4, then the same command with max_steps 8
    out = tmp_path / "resumed"
    first, text = run(recipe_for(synth_folder, max_steps=4, checkpoint_every=2), out)
    assert first == out / "step-00000004.pt"
    assert "Resuming" not in text
    last, text = run(recipe_for(synth_folder, max_steps=8, checkpoint_every=2), out)
    assert "Resuming from step 4" in text
    assert last == out / "step-00000008.pt"
    full, resumed = losses(tmp_path / "full"), losses(out)
    assert sorted(resumed) == list(range(1, 9))  # one record per step, none repeated
    assert resumed == full  # the same batches, noise and optimiser state: identical losses
    a = load_checkpoint(tmp_path / "full" / "step-00000008.pt")
    b = load_checkpoint(last)
    assert b.step == 8
    for key in a.model:
        assert torch.equal(a.model[key], b.model[key])
        assert torch.equal(a.ema[key], b.ema[key])
    # the split made by the first run is kept
    assert (out / "split.json").is_file()


def test_nothing_to_do_when_done(tmp_path, synth_folder):
    recipe = recipe_for(synth_folder, max_steps=2)
    last, _ = run(recipe, tmp_path)
    before = (tmp_path / "metrics.jsonl").read_text()
    again, text = run(recipe, tmp_path)
    assert again == last == tmp_path / "step-00000002.pt"
    assert "nothing to do" in text
    assert (tmp_path / "metrics.jsonl").read_text() == before


def test_keep_checkpoints_prunes(tmp_path, synth_folder):
    recipe = recipe_for(synth_folder, max_steps=5, checkpoint_every=1, keep_checkpoints=2)
    run(recipe, tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".pt" or ".tmp" in p.name)
    assert names == ["step-00000004.pt", "step-00000005.pt"]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_other_model_in_run_folder_is_refused(tmp_path, synth_folder, trained_tiny):
    shutil.copytree(trained_tiny, tmp_path, dirs_exist_ok=True)  # a run of the tiny recipe at step 2
    other = recipe_for(synth_folder, "model.residual_channels=8", max_steps=4)
    with pytest.raises(AudiodiffError) as info:
        run(other, tmp_path)
    assert "[model]" in str(info.value) and str(tmp_path) in str(info.value)
    other_audio = recipe_for(synth_folder, "audio.fmax=11025.0", max_steps=4)
    with pytest.raises(AudiodiffError, match=r"\[audio\]"):
        run(other_audio, tmp_path)
    # the refused runs changed nothing
    assert sorted(p.name for p in tmp_path.glob("step-*.pt")) == ["step-00000002.pt"]


def test_train_settings_may_change_on_resume(tmp_path, synth_folder, trained_tiny):
    shutil.copytree(trained_tiny, tmp_path, dirs_exist_ok=True)  # a run of the tiny recipe at step 2
    last, text = run(recipe_for(synth_folder, max_steps=3, learning_rate=5e-4), tmp_path)
    assert "Resuming from step 2" in text and last.name == "step-00000003.pt"


def test_init_fine_tunes_an_exported_model(tmp_path, synth_folder, trained_tiny):
    exported = export_inference_copy(load_checkpoint(trained_tiny / "step-00000002.pt"), tmp_path / "model.pt")
    ema = load_checkpoint(exported).ema  # float16: what the file holds
    recipe = recipe_for(synth_folder, max_steps=4, checkpoint_every=1)
    trainer = Trainer(recipe, tmp_path / "probe", TrainOptions("cpu", progress=False))
    trainer.start_from(exported)
    assert trainer.step == 2
    for key, value in ema.items():  # both start from the exported weights, cast back to float32
        assert trainer.state.network.state_dict()[key].dtype == torch.float32
        assert torch.equal(trainer.state.network.state_dict()[key], value.float())
        assert torch.equal(trainer.state.ema.state_dict()[key], value.float())
    out = tmp_path / "tuned"
    last, text = run(recipe, out, init=exported)
    assert f"Starting from {exported} (step 2" in text and last == out / "step-00000004.pt"
    assert sorted(losses(out)) == [3, 4]  # the step count goes on from the model's
    tuned = load_checkpoint(last).model
    moved = max(float((tuned[k] - v.float()).abs().max()) for k, v in ema.items())
    assert 0 < moved < 0.05  # two small steps away from the exported weights
    # run again with more steps: the run folder's own checkpoint wins over --init
    again, text = run(recipe_for(synth_folder, max_steps=5), out, init=exported)
    assert "ignored" in text and "Resuming from step 4" in text and again == out / "step-00000005.pt"


def test_a_fine_tune_inherits_its_parents_inference_defaults(tmp_path, synth_folder, run_main, trained_tiny):
    """An exported parent with non-default inference defaults: the fine-tuned checkpoints
    carry the same defaults (marked as inherited, through a resume too), so inference on
    them resolves the same plan as on the parent, and `vocode` says where they came from."""
    base = load_checkpoint(trained_tiny / "step-00000002.pt")
    found = SearchedSchedule((2e-4, 0.05, 0.4), "ddim", 0.25, "logmel", 0.5, 3, gain_adjust=True)
    defaults = base.defaults.with_schedules({3: found}).with_settings(steps=3, gain_adjust=True, refine=2)
    parent = export_inference_copy(base.with_defaults(defaults), tmp_path / "parent.pt")
    last, text = run(recipe_for(synth_folder, max_steps=3), tmp_path / "tuned", init=parent)
    assert f"defaults inherited from {parent}" in text
    tuned = load_checkpoint(last).defaults
    assert (tuned.steps, tuned.gain_adjust, tuned.refine) == (3, True, 2) and tuned.inherited_from == str(parent)
    assert tuned.schedules == {3: dataclasses.replace(found, inherited_from=str(parent))}
    plan = Vocoder.from_checkpoint(last).plan()
    assert plan == Vocoder.from_checkpoint(parent).plan()
    assert (plan.steps, plan.sampler, plan.eta, plan.gain_adjust, plan.refine) == (3, "ddim", 0.25, True, 2)
    resumed, _ = run(recipe_for(synth_folder, max_steps=4), tmp_path / "tuned")
    assert load_checkpoint(resumed).defaults == tuned
    clip = tmp_path / "in.wav"
    sf.write(clip, sf.read(sorted(synth_folder.glob("*.wav"))[0])[0][:8192], 22050)
    voc = run_main("vocode", "-c", resumed, clip, "-o", tmp_path / "out.wav")
    first = " ".join(voc.stderr.split())
    assert voc.returncode == 0 and f"defaults inherited from {parent}" in first and "3 steps, searched schedule" in first
    # the inherited schedule was fitted to the parent's weights: vocode says so once, the parent itself does not
    assert first.count(f"note: the 3-step schedule was searched on {parent}, not on these weights") == 1
    own = run_main("vocode", "-c", parent, clip, "-o", tmp_path / "parent.wav")
    assert own.returncode == 0 and "3 steps, searched schedule" in own.stderr and "note: the" not in own.stderr
    # a training run from scratch carries none, and says so
    scratch = run_main("vocode", "-c", trained_tiny / "step-00000002.pt", clip, "-o", tmp_path / "raw.wav")
    assert "no inference defaults in the checkpoint" in " ".join(scratch.stderr.split())


def test_init_refuses_another_model(tmp_path, synth_folder, trained_tiny):
    other = recipe_for(synth_folder, "model.residual_channels=8", max_steps=4)
    init = trained_tiny / "step-00000002.pt"
    with pytest.raises(AudiodiffError) as info:
        run(other, tmp_path / "tuned", init=init)
    assert str(info.value).startswith(f"--init {init}:") and "[model]" in str(info.value)
    with pytest.raises(AudiodiffError, match="nothing.pt"):
        run(other, tmp_path / "tuned", init=tmp_path / "nothing.pt")
    with raises_naming(AudiodiffError, init, "train.max_steps"):
        run(recipe_for(synth_folder, max_steps=2), tmp_path / "tuned", init=init)
    assert not (tmp_path / "tuned").exists()  # a refused run leaves no folder behind


def test_cli_init_error_is_one_line(tmp_path, synth_folder, run_main):
    sets = [x for o in tiny_overrides(synth_folder) for x in ("--set", o)]
    result = run_main("train", TINY, *sets, "--out-dir", tmp_path / "run", "--init", tmp_path / "missing.pt")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "missing.pt" in result.stderr
    assert not (tmp_path / "run").exists()


def test_validation_writes_samples_and_metric(tmp_path, synth_folder):
    recipe = recipe_for(synth_folder, max_steps=2, validate_every=2, validate_seconds=0.5)
    run(recipe, tmp_path)
    val = [m for m in metrics(tmp_path) if "val_log_mel_distance" in m]
    assert len(val) == 1 and val[0]["step"] == 2
    assert 0.0 < val[0]["val_log_mel_distance"] < 20.0
    expected = int(0.5 * 22050) // 256 * 256
    for name in ("reference.wav", "step-00000002.wav"):
        info = sf.info(tmp_path / "samples" / name)
        assert (info.samplerate, info.frames) == (22050, expected)


def test_unconditional_training_generates_samples(tmp_path, synth_folder):
    recipe = recipe_for(synth_folder, "model.conditional=false", max_steps=2, validate_every=2,
                        validate_seconds=0.25)
    last, _ = run(recipe, tmp_path)
    assert load_checkpoint(last).recipe.model.conditional is False
    info = sf.info(tmp_path / "samples" / "step-00000002.wav")
    assert info.frames == round(0.25 * 22050)
    val = [m for m in metrics(tmp_path) if "val_flatness" in m]  # an untrained net makes noise: flat
    assert len(val) == 1 and val[0]["step"] == 2 and 0.05 < val[0]["val_flatness"] <= 1.0


def test_segment_must_be_a_multiple_of_hop(tmp_path, synth_folder):
    with raises_naming(AudiodiffError, "train.segment 1000", "audio.hop_length 256"):
        Trainer(recipe_for(synth_folder, segment=1000), tmp_path, TrainOptions("cpu", progress=False))


def test_missing_data_root(tmp_path):
    with pytest.raises(AudiodiffError, match="data.root"):
        run(recipe_for(tmp_path / "nowhere"), tmp_path / "run")


def test_trains_on_real_ljspeech_mini(tmp_path, ljspeech_mini):
    recipe = load_recipe(TINY, tiny_overrides(ljspeech_mini, source="ljspeech", max_steps=3))
    last, text = run(recipe, tmp_path)
    assert last.name == "step-00000003.pt"
    split = json.loads((tmp_path / "split.json").read_text())
    assert len(split["validation"]) == 1
    assert len(split["train"]) + len(split["validation"]) == 22
    assert sorted(losses(tmp_path)) == [1, 2, 3]


@pytest.mark.slow
def test_sigterm_to_the_process_group_saves_without_traceback(tmp_path, synth_folder):
    """A scheduler (or `pkill -f`) signals the trainer and its DataLoader workers at once:
    the step in progress is saved, the exit is clean, and the checkpoint loads."""
    out = tmp_path / "run"
    overrides = tiny_overrides(synth_folder, max_steps=100000, num_workers=1, checkpoint_every=100000)
    cmd = [sys.executable, "-m", "audiodiff", "train", str(TINY), "--out-dir", str(out), "--device", "cpu"]
    for item in overrides:
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    deadline = time.monotonic() + 120
    while not any("loss" in r for r in (metrics(out) if (out / "metrics.jsonl").exists() else [])):
        assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Interrupted: saving step" in err and "Traceback" not in err and "RuntimeError" not in err, err
    saved = sorted(out.glob("step-*.pt"))
    assert len(saved) == 1 and load_checkpoint(saved[0]).step >= 1


def _thread_failure(filename: str, exc: BaseException):
    """ExceptHookArgs of `exc` raised in code that claims to live in `filename`."""
    import threading
    namespace: dict = {}
    exec(compile("def serve(exc):\n    raise exc\n", filename, "exec"), namespace)
    try:
        namespace["serve"](exc)
    except BaseException as caught:  # noqa: BLE001 - we want its traceback
        return threading.ExceptHookArgs([type(caught), caught, caught.__traceback__, None])


def test_worker_thread_hook_silences_only_fd_sharing_hangups(capsys):
    from audiodiff.data.crops import quiet_fd_sharing_hangup
    sharer = "/usr/lib/python3.11/multiprocessing/resource_sharer.py"
    quiet_fd_sharing_hangup(_thread_failure(sharer, ConnectionResetError(104, "Connection reset by peer")))
    quiet_fd_sharing_hangup(_thread_failure(sharer, EOFError()))
    assert capsys.readouterr().err == ""
    quiet_fd_sharing_hangup(_thread_failure(sharer, ValueError("a real bug")))  # other errors still show
    quiet_fd_sharing_hangup(_thread_failure("/work/elsewhere.py", ConnectionResetError(104, "reset")))
    err = capsys.readouterr().err
    assert "ValueError: a real bug" in err and "ConnectionResetError" in err and err.count("Traceback") == 2


def test_worker_sys_hook_silences_only_fd_sharing_hangups(capsys):
    """resource_sharer's serving loop catches its errors and calls sys.excepthook, not the
    thread hook: that is how the SIGTERM test's traceback got through (seen in CI)."""
    from audiodiff.data.crops import quiet_fd_sharing_hangup_sys
    sharer = "/usr/lib/python3.11/multiprocessing/resource_sharer.py"
    hangup = _thread_failure(sharer, ConnectionResetError(104, "Connection reset by peer"))
    quiet_fd_sharing_hangup_sys(hangup.exc_type, hangup.exc_value, hangup.exc_traceback)
    assert capsys.readouterr().err == ""
    for failure in (_thread_failure(sharer, ValueError("a real bug")),
                    _thread_failure("/work/elsewhere.py", ConnectionResetError(104, "reset"))):
        quiet_fd_sharing_hangup_sys(failure.exc_type, failure.exc_value, failure.exc_traceback)
    err = capsys.readouterr().err
    assert "ValueError: a real bug" in err and "ConnectionResetError" in err and err.count("Traceback") == 2

