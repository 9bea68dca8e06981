"""The command line through its entry point `audiodiff.cli.main` (what the console script runs):
in a subprocess (`python -m audiodiff`) for training, the end-to-end chain and the exit-2 path,
and in this process (same function, no interpreter start-up) for the many other cases."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.audio import MelSpectrogram
from audiodiff.pretrained import DEFAULTS
from audiodiff.recipe import load_recipe

from conftest import SR, THREADS, TINY, chirp, tiny_overrides


def cli(*args, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "audiodiff", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)




def assert_user_error(result: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 2, no traceback, and one `error:` line on stderr naming each of `words`."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert str(word) in errors[0], (word, errors[0])
    return errors[0]


def set_args(overrides: list[str]) -> list[str]:
    return [a for item in overrides for a in ("--set", item)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_folder) -> Path:
    """A conditional tiny model trained for 10 steps through `audiodiff train`."""
    out = tmp_path_factory.mktemp("cli_run")
    result = cli("train", TINY, "--out-dir", out, "--max-steps", 10, "--device", "cpu",
                 *set_args(tiny_overrides(synth_folder, checkpoint_every=5, log_every=5)))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert (out / "step-00000010.pt").is_file() and (out / "step-00000005.pt").is_file()
    assert f"Checkpoint: {out / 'step-00000010.pt'}" in result.stderr.replace("\n", "")
    return out / "step-00000010.pt"


@pytest.fixture(scope="module")
def unconditional(tmp_path_factory, synth_folder) -> Path:
    """An unconditional tiny model trained for 3 steps through `audiodiff train`."""
    out = tmp_path_factory.mktemp("cli_uncond")
    result = cli("train", TINY, "--out-dir", out, "--max-steps", 3, "--device", "cpu", "--set", "model.conditional=false",
                 *set_args(tiny_overrides(synth_folder)))
    assert result.returncode == 0, result.stderr
    return out / "step-00000003.pt"


def test_help_lists_commands(run_main):
    result = cli("--help")
    assert result.returncode == 0
    listed = re.findall(r"^\W*(\w+)\s{2,}\S", result.stdout.split("Commands", 1)[1], flags=re.M)
    assert {"train", "vocode", "sample", "info"} <= set(listed), listed
    for command in ("train", "vocode", "sample", "info"):
        sub = run_main(command, "--help")
        assert sub.returncode == 0 and "Usage" in sub.stdout


@pytest.mark.slow
def test_info(trained, run_main):
    result = run_main("info", "-c", trained)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert f"{trained}: vocoder (mel-conditioned), trained 10 steps" in text
    assert "22050 Hz, preset hifigan, 80 mels, hop 256" in text
    assert "6 layers x 16 channels" in text


@pytest.mark.slow
def test_vocode_mel_npy(tmp_path, trained, run_main):
    mel = MelSpectrogram(load_recipe(TINY).audio)(torch.from_numpy(chirp(0.5, amp=0.3))).numpy()
    frames = mel.shape[-1]
    np.save(tmp_path / "m.npy", mel)
    torch.save(torch.from_numpy(mel).unsqueeze(0), tmp_path / "m2.pt")
    out = tmp_path / "out.wav"
    result = cli("vocode", tmp_path / "m.npy", "-c", trained, "-o", out, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    info = sf.info(out)
    assert (info.samplerate, info.frames) == (SR, frames * 256)
    # the same mel as .pt, with ddim and 3 steps, into a folder
    result = run_main("vocode", tmp_path / "m2.pt", "-c", trained, "--out-dir", tmp_path / "o", "--steps", 3,
                 "--sampler", "ddim", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert sf.info(tmp_path / "o" / "m2.wav").frames == frames * 256


@pytest.mark.slow
def test_vocode_audio_keeps_length_and_seed_repeats(tmp_path, trained, run_main):
    wav = chirp(0.4, amp=0.3)  # 8820 samples at 44.1 kHz: 4410 at 22.05 kHz, not a multiple of the hop
    sf.write(tmp_path / "in.wav", wav, 44100)  # resampled to the model's 22050 first
    first = run_main("vocode", tmp_path / "in.wav", "-c", trained, "-o", tmp_path / "a.flac", "--seed", 3, "--device", "cpu")
    assert first.returncode == 0, first.stderr
    second = run_main("vocode", tmp_path / "in.wav", "-c", trained, "-o", tmp_path / "b.flac", "--seed", 3,
                 "--device", "cpu")
    assert second.returncode == 0, second.stderr
    a, sr = sf.read(tmp_path / "a.flac")
    b, _ = sf.read(tmp_path / "b.flac")
    assert sr == SR and len(a) == round(8820 / 2)
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_vocode_default_output_name(tmp_path, trained, run_main):
    sf.write(tmp_path / "speech.wav", chirp(0.2, amp=0.3), SR)
    result = run_main("vocode", "speech.wav", "-c", trained, "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sf.info(tmp_path / "speech.vocoded.wav").frames == round(0.2 * SR)


@pytest.mark.slow
def test_threads_option_limits_torch_and_rejects_zero(tmp_path, trained, unconditional, run_main):
    """--threads N sets torch's intra-op threads; 0 is a one-line error, exit 2, no file written."""
    sf.write(tmp_path / "in.wav", chirp(0.2, amp=0.3), SR)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        result = run_main("vocode", tmp_path / "in.wav", "-c", trained, "-o", tmp_path / "one.wav", "--threads", 1,
                          "--device", "cpu")
        assert result.returncode == 0, result.stderr
        assert torch.get_num_threads() == 1 and sf.info(tmp_path / "one.wav").frames == round(0.2 * SR)
    finally:
        torch.set_num_threads(before)
    bad = {"vocode": ("vocode", tmp_path / "in.wav", "-c", trained, "-o", tmp_path / "bad.wav"),
           "sample": ("sample", "--seconds", 0.2, "-c", unconditional, "-o", tmp_path / "bad.wav"),
           "eval": ("eval", tmp_path / "in.wav", "-c", trained, "--out-dir", tmp_path / "bad"),
           "search": ("schedule", "search", tmp_path / "in.wav", "-c", trained, "-o", tmp_path / "bad.pt"),
           "bench": ("bench", "-c", trained, "-o", tmp_path / "bad.json")}
    for name, args in bad.items():
        result = run_main(*args, "--threads", 0, "--device", "cpu")
        assert result.returncode == 2, name
        assert result.stderr.strip() == "error: --threads 0: must be >= 1", (name, result.stderr)
    assert not any(p.name.startswith("bad") for p in tmp_path.iterdir())


@pytest.mark.slow
def test_sample_lengths_and_numbering(tmp_path, unconditional, run_main):
    result = cli("sample", "--seconds", 0.5, "-c", unconditional, "-o", tmp_path / "one.wav", "--steps", 6,
                 "--device", "cpu")
    assert result.returncode == 0, result.stderr
    info = sf.info(tmp_path / "one.wav")
    assert (info.samplerate, info.frames) == (SR, round(0.5 * SR))
    result = run_main("sample", "--seconds", 0.2, "-c", unconditional, "-o", tmp_path / "many.wav", "-n", 2,
                 "--steps", 6, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["many-0.wav", "many-1.wav", "one.wav"]
    a, _ = sf.read(tmp_path / "many-0.wav")
    b, _ = sf.read(tmp_path / "many-1.wav")
    assert len(a) == len(b) == round(0.2 * SR)
    assert not np.array_equal(a, b)
    assert "unconditional generator, trained 3 steps" in " ".join(run_main("info", "-c", unconditional).stdout.split())


# ----------------------------------------------------------------------------- errors
@pytest.mark.slow
def test_missing_input_file(tmp_path, trained):
    missing = tmp_path / "nothere.wav"
    out = tmp_path / "out.wav"
    result = cli("vocode", missing, "-c", trained, "-o", out, "--device", "cpu")
    assert_user_error(result, missing)
    assert list(tmp_path.iterdir()) == []  # no output, no temp file


@pytest.mark.slow
def test_one_bad_input_stops_before_any_output(tmp_path, trained, run_main):
    good = tmp_path / "good.wav"
    sf.write(good, chirp(0.2, amp=0.3), SR)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF but really garbage" * 20)
    result = run_main("vocode", good, bad, "-c", trained, "--out-dir", tmp_path / "o", "--device", "cpu")
    assert_user_error(result, bad)
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


def test_missing_checkpoint(tmp_path, run_main):
    sf.write(tmp_path / "in.wav", chirp(0.1), SR)
    ckpt = tmp_path / "nope.pt"
    result = run_main("vocode", tmp_path / "in.wav", "-c", ckpt, "-o", tmp_path / "out.wav")
    assert_user_error(result, ckpt, "not found")
    assert not (tmp_path / "out.wav").exists()
    assert_user_error(run_main("info", "-c", ckpt), ckpt)
    assert_user_error(run_main("sample", "--seconds", 1, "-c", ckpt, "-o", tmp_path / "s.wav"), ckpt)


def test_foreign_checkpoint(tmp_path, run_main):
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(3)}, "epoch": 3}, foreign)
    sf.write(tmp_path / "in.wav", chirp(0.1), SR)
    result = run_main("vocode", tmp_path / "in.wav", "-c", foreign, "-o", tmp_path / "out.wav")
    assert_user_error(result, foreign, "not an audiodiff checkpoint")
    assert not (tmp_path / "out.wav").exists()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(17).bytes(2000))  # makes torch's unpickler raise IndexError
    assert_user_error(run_main("info", "-c", garbage), garbage)


@pytest.mark.slow
def test_wrong_shape_mel(tmp_path, trained, run_main):
    np.save(tmp_path / "mel.npy", np.full((64, 20), -5.0, dtype=np.float32))
    result = run_main("vocode", tmp_path / "mel.npy", "-c", trained, "-o", tmp_path / "out.wav", "--device", "cpu")
    assert_user_error(result, tmp_path / "mel.npy", "[64, 20]")
    assert not (tmp_path / "out.wav").exists()
    np.save(tmp_path / "db.npy", np.linspace(-80, 0, 80 * 20, dtype=np.float32).reshape(80, 20))
    result = run_main("vocode", tmp_path / "db.npy", "-c", trained, "-o", tmp_path / "out.wav", "--device", "cpu")
    assert_user_error(result, tmp_path / "db.npy", "outside")
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.slow
def test_model_kind_mismatch(tmp_path, trained, unconditional, run_main):
    sf.write(tmp_path / "in.wav", chirp(0.1), SR)
    assert_user_error(run_main("vocode", tmp_path / "in.wav", "-c", unconditional, "-o", tmp_path / "o.wav"),
                      "unconditional")
    assert_user_error(run_main("sample", "--seconds", 0.1, "-c", trained, "-o", tmp_path / "s.wav"), "mel-conditioned")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


def test_bad_recipe_key(tmp_path, synth_folder, run_main):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(TINY.read_text().replace("batch_size = 4", "batch_sise = 4"))
    result = run_main("train", recipe, "--out-dir", tmp_path / "run", "--set", f"data.root={synth_folder}")
    assert_user_error(result, recipe, "train.batch_sise")
    assert not (tmp_path / "run").exists()
    result = run_main("train", TINY, "--out-dir", tmp_path / "run", "--set", "train.batch_size=many")
    assert_user_error(result, "train.batch_size")
    result = run_main("train", tmp_path / "absent.toml", "--out-dir", tmp_path / "run")
    assert_user_error(result, tmp_path / "absent.toml")


@pytest.mark.slow
def test_bad_options(tmp_path, trained, run_main):
    sf.write(tmp_path / "a.wav", chirp(0.1), SR)
    assert_user_error(run_main("vocode", tmp_path / "a.wav", tmp_path / "a.wav", "-c", trained, "-o", tmp_path / "o.wav"),
                      "--out-dir")
    assert_user_error(run_main("vocode", tmp_path / "a.wav", "-c", trained, "-o", tmp_path / "o.wav", "--device", "tpu9"),
                      "tpu9")
    assert_user_error(run_main("vocode", tmp_path / "a.wav", "-c", trained, "-o", tmp_path / "o.mp3", "--device", "cpu"),
                      "o.mp3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


@pytest.mark.skipif(DEFAULTS["vocoder"].is_file(), reason="a default vocoder is shipped in this install")
def test_no_checkpoint_and_no_default(tmp_path, run_main):
    sf.write(tmp_path / "a.wav", chirp(0.1), SR)
    assert_user_error(run_main("vocode", tmp_path / "a.wav", "-o", tmp_path / "o.wav"), "no checkpoint given")
