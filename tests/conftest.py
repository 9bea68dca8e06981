"""Shared fixtures: paths to the repo and the real audio beside it, small synthetic audio,
quick recipes built from the shipped tiny recipe (audiodiff/recipes/tiny.toml), and one
tiny model trained once per session (`trained_tiny`)."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES = REPO_ROOT / "audiodiff" / "recipes"  # the shipped recipes (package data)
TINY = RECIPES / "tiny.toml"
# CI clones the repo next to `shared/`; locally the repo is /work/main beside /work/shared.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
LJSPEECH_MINI = SHARED_DATA / "ljspeech-mini"
SR = 22050

# One intra-op thread by default. The models under test are tiny, so a second thread
# gains little, and on a shared, busy machine two OpenMP threads that wait for each other
# at every op made some tests 50x slower. AUDIODIFF_TEST_THREADS=N changes it.
THREADS = int(os.environ.get("AUDIODIFF_TEST_THREADS", "1"))
torch.set_num_threads(THREADS)


@pytest.fixture(autouse=True)
def _deterministic_torch():
    """Every test starts from the same global RNG state (tests seed explicitly anyway)."""
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture(scope="session")
def ljspeech_mini() -> Path:
    """The real LJSpeech clips in ../shared/data/ljspeech-mini; skips when absent."""
    if not (LJSPEECH_MINI / "metadata.csv").is_file() or not any((LJSPEECH_MINI / "wavs").glob("*.wav")):
        pytest.skip(f"real audio not available at {LJSPEECH_MINI}")
    return LJSPEECH_MINI


def chirp(seconds: float, sr: int = SR, f0: float = 200.0, f1: float = 4000.0, amp: float = 0.5,
          seed: int = 0) -> np.ndarray:
    """A linear chirp with a little seeded noise, float32 [samples]."""
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds))
    rng = np.random.default_rng(seed)
    return (amp * np.sin(phase) + 0.01 * rng.standard_normal(n)).astype(np.float32)


def sine(seconds: float, freq: float = 440.0, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    n = int(round(seconds * sr))
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


@pytest.fixture(scope="session")
def synth_folder(tmp_path_factory) -> Path:
    """A 'folder' data set of six generated clips (sines and chirps, 1-1.5 s, 22.05 kHz)."""
    root = tmp_path_factory.mktemp("synth_data")
    for i in range(6):
        seconds = 1.0 + 0.1 * i
        wav = chirp(seconds, f0=100 + 50 * i, f1=3000 + 200 * i, seed=i) if i % 2 else sine(seconds, 220 * (i + 1))
        sf.write(root / f"clip{i}.wav", wav, SR, subtype="PCM_16")
    return root


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """An untrained 2 x 8 vocoder checkpoint of the tiny recipe (seeded weights)."""
    from audiodiff.checkpoint import Checkpoint, save_checkpoint
    from audiodiff.networks.diffwave import DiffWave
    from audiodiff.recipe import load_recipe

    recipe = load_recipe(TINY, ["model.residual_layers=2", "model.residual_channels=8"])
    torch.manual_seed(0)
    net = DiffWave.from_recipe(recipe)
    path = tmp_path_factory.mktemp("ckpt") / "step-00000001.pt"
    return save_checkpoint(path, Checkpoint(recipe=recipe, model=net.state_dict(), ema=net.state_dict(), step=1))


@contextlib.contextmanager
def raises_naming(error: type[BaseException], *names: object) -> Iterator[pytest.ExceptionInfo]:
    """pytest.raises(error), and its message names each of `names` (a key, a file, an
    option, a value): what the error points at, not how it is worded."""
    with pytest.raises(error) as info:
        yield info
    message = str(info.value)
    for name in names:
        assert str(name) in message, (name, message)


def tiny_overrides(root: Path, source: str = "folder", **train) -> list[str]:
    """--set style overrides that make the tiny recipe quick and quiet on CPU."""
    values = {"max_steps": 6, "log_every": 1, "num_workers": 0, "checkpoint_every": 1000,
              "validate_every": 1000, "batch_size": 2, "segment": 4096, **train}
    return ([f"data.root='{root.as_posix()}'", f"data.source='{source}'", "data.validation_count=1"]
            + [f"train.{k}={v!r}" if isinstance(v, str) else f"train.{k}={v}" for k, v in values.items()])


@pytest.fixture
def run_main(monkeypatch, capsys):
    """Run `audiodiff.cli.main` (the console script's entry point) in this process: quicker
    than a subprocess, the same code path. Returns a CompletedProcess-like result."""
    from audiodiff.cli import main

    def call(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        monkeypatch.setenv("COLUMNS", "200")
        monkeypatch.setattr(sys, "argv", ["audiodiff", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return call


def train_run(recipe, out: Path, init: Path | None = None) -> tuple[Path, str]:
    """Train (or resume) `recipe` in `out` on the CPU, quietly (a new run from `init`'s
    weights when given); returns (last checkpoint, console text)."""
    import io

    from rich.console import Console

    from audiodiff.training import TrainOptions, Trainer

    log = io.StringIO()
    last = Trainer(recipe, out, TrainOptions("cpu", Console(file=log, width=300), progress=False, init=init)).run()
    return last, log.getvalue()


#: Steps the session's trained tiny model has (its checkpoint: `step-00000002.pt`).
TRAINED_STEPS = 2


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory, synth_folder) -> Path:
    """The run folder of the tiny vocoder trained TRAINED_STEPS steps on `synth_folder`
    (the recipe `load_recipe(TINY, tiny_overrides(synth_folder, max_steps=2))`), trained once
    per session for the tests that need a trained model, not a training. Read it, or copy
    it (shutil.copytree) to resume or extend it; never write into it."""
    from audiodiff.recipe import load_recipe

    out = tmp_path_factory.mktemp("trained_tiny") / "run"
    last, _ = train_run(load_recipe(TINY, tiny_overrides(synth_folder, max_steps=TRAINED_STEPS)), out)
    assert last == out / f"step-{TRAINED_STEPS:08d}.pt"
    return out


def read_metrics(out: Path) -> list[dict]:
    """The records of a run's metrics.jsonl."""
    import json

    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
