"""Data-parallel training: 2 processes on CPU (gloo) against one process with the same global batch."""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from rich.console import Console

from audiodiff.checkpoint import load_checkpoint
from audiodiff.data import BatchLayout, StepBatchSampler
from audiodiff.training.distributed import init_distributed, shutdown
from audiodiff.recipe import load_recipe
from audiodiff.training import TrainOptions, Trainer

from conftest import TINY, tiny_overrides

STEPS = 4


def recipe_for(root: Path, **train):
    return load_recipe(TINY, tiny_overrides(root, validate_every=1000, checkpoint_every=2, **train))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, first, then, out: str, result: str) -> None:
    """One process as torchrun starts it: train `first` (to step 2), resume with `then` (to
    STEPS), then save the weights this rank holds for the test to compare."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    try:
        assert (ctx.rank, ctx.world_size, ctx.distributed) == (rank, world, True)
        log = io.StringIO()
        for recipe in (first, then):
            trainer = Trainer(recipe, out, TrainOptions(console=Console(file=log, width=200), progress=False), dist=ctx)
            trainer.run()
        # the weights this rank holds in memory after the last step
        torch.save({"model": trainer.state.network.state_dict(), "ema": trainer.state.ema.state_dict(),
                    "log": log.getvalue()}, Path(result) / f"rank{rank}.pt")
    finally:
        shutdown(ctx)


def losses(out: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def test_global_batch_is_split_without_changing_its_crops():
    one = StepBatchSampler(50, BatchLayout(12), seed=3, start_step=5, end_step=8)
    shares = [list(StepBatchSampler(50, BatchLayout(3, rank=r, world_size=2, accum=2), seed=3, start_step=5,
                                    end_step=8)) for r in range(2)]
    assert len(one) == 3 and all(len(s) == 6 for s in shares)
    for k, whole in enumerate(one):
        # layout [accum][world][batch]: micro-batch m of rank r holds rows (m * 2 + r) * 3 ...
        rebuilt = [pair for m in range(2) for r in range(2) for pair in shares[r][k * 2 + m]]
        assert rebuilt == whole
    # a fresh draw at every step
    steps = list(one)
    assert steps[0] != steps[1] != steps[2]


def test_one_process_without_torchrun(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    assert ctx.on_main(lambda: 7) == 7
    shutdown(ctx)


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path, synth_folder):
    # 2 processes x 1 crop x 2 accumulation steps = a global batch of 4, trained to step 2,
    # then resumed to step 4 (as a re-run of the same torchrun command would)
    ddp = tmp_path / "ddp"
    first = recipe_for(synth_folder, batch_size=1, grad_accum=2, max_steps=2)
    then = recipe_for(synth_folder, batch_size=1, grad_accum=2, max_steps=STEPS)
    mp.spawn(_ddp_worker, args=(2, free_port(), first, then, str(ddp), str(tmp_path)), nprocs=2)
    # one process, batch of 4, straight through
    single = tmp_path / "single"
    Trainer(recipe_for(synth_folder, batch_size=4, max_steps=STEPS), single,
            TrainOptions("cpu", Console(file=io.StringIO()), progress=False)).run()

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    ref = load_checkpoint(single / "step-00000004.pt")
    got = load_checkpoint(ddp / "step-00000004.pt")
    assert got.step == STEPS and got.extra["global_batch"] == 4 and got.extra["processes"] == 2
    for key in ref.model:
        # (a) both ranks hold the same weights; rank 0 wrote them
        assert torch.equal(ranks[0]["model"][key], ranks[1]["model"][key]), key
        assert torch.equal(ranks[0]["ema"][key], ranks[1]["ema"][key]), key
        assert torch.equal(got.model[key], ranks[0]["model"][key]), key
        # (b) and they are what one process with the global batch learns, up to float rounding
        torch.testing.assert_close(got.model[key], ref.model[key], rtol=1e-4, atol=2e-5, msg=key)
        torch.testing.assert_close(got.ema[key], ref.ema[key], rtol=1e-4, atol=2e-5, msg=key)
    assert "Resuming from step 2" in ranks[0]["log"] and ranks[1]["log"] == ""  # rank 0 alone prints
    # rank 0 alone writes: one record per step, the global batch logged, one set of files
    a, b = losses(ddp), losses(single)
    assert sorted(a) == list(range(1, STEPS + 1))
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-5)
    records = [json.loads(line) for line in (ddp / "metrics.jsonl").read_text().splitlines()]
    assert [r["global_batch"] for r in records if "global_batch" in r] == [4, 4]  # the first run and the resumed one
    assert sorted(p.name for p in ddp.glob("step-*.pt")) == ["step-00000002.pt", "step-00000004.pt"]


@pytest.mark.slow
def test_torchrun_command_line(tmp_path, synth_folder):
    """The README's command: torchrun starts 2 processes of `audiodiff train`; rank 0 alone prints and writes."""
    out = tmp_path / "run"
    sets = tiny_overrides(synth_folder, max_steps=2, batch_size=1) + ["train.tensorboard=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "audiodiff", "train", str(TINY), "--out-dir", str(out), "--device", "cpu",
         *[a for s in sets for a in ("--set", s)]],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout + result.stderr
    assert text.count("Global batch: 2 crops per step = 1 per process x 2 process(es) x 1 accumulation step(s)") == 1
    assert text.count("Checkpoint: ") == 1 and text.count("Data: ") == 1
    assert sorted(p.name for p in out.glob("step-*.pt")) == ["step-00000002.pt"]
    assert sorted(losses(out)) == [1, 2]
