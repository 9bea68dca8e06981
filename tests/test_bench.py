"""`audiodiff bench`: real-time factor and peak memory, measured in fresh subprocesses."""
from __future__ import annotations

import json

import pytest

from conftest import TINY
from test_eval_cli import run_cli


@pytest.mark.slow
def test_bench_recipe_random_weights(tmp_path, run_main):
    target = tmp_path / "bench.json"
    code, stdout, stderr = run_cli(run_main, "bench", "--recipe", TINY, "--seconds", 0.5, "--steps", "1,2",
                                   "--threads", 1, "--device", "cpu", "-o", target)
    assert code == 0, stderr
    doc = json.loads(target.read_text())
    meta, results = doc["meta"], doc["results"]
    assert [r["steps"] for r in results] == [1, 2]
    for r in results:
        assert r["task"] == "vocode" and r["rtf"] > 0 and r["runs"] == 3 and len(r["times_s"]) == 3
        assert r["peak_rss_gib"] > 0.05 and r["output_finite"] and r["threads"] == 1
        assert r["output_samples"] == -(-int(0.5 * 22050) // 256) * 256
    assert meta["threads"] == 1 and meta["device"] == "cpu" and meta["torch_version"] and meta["n_params"] > 0
    assert meta["source"].startswith("recipe")
    for word in ("RTF", "peak RSS", "torch", "cpu", "gain adjustment off, 0 refinement iterations"):
        assert word in stdout, word
    assert all(r["gain_adjust"] is False and r["refine"] == 0 for r in results)


def test_bench_takes_the_mel_consistency_settings(tmp_path, run_main):
    target = tmp_path / "bench.json"
    code, stdout, stderr = run_cli(run_main, "bench", "--recipe", TINY, "--seconds", 0.25, "--steps", "1",
                                   "--runs", 1, "--warmup", 0, "--threads", 1, "--device", "cpu",
                                   "--no-gain-adjust", "--refine", 4, "-o", target)
    assert code == 0, stderr
    (r,) = json.loads(target.read_text())["results"]
    assert r["gain_adjust"] is False and r["refine"] == 4 and r["output_finite"]
    assert "gain adjustment off, 4 refinement iterations" in stdout


def test_bench_unconditional_samples(tmp_path, run_main):
    target = tmp_path / "bench.json"
    code, stdout, stderr = run_cli(run_main, "bench", "--recipe", TINY, "--set", "model.conditional=false",
                                   "--seconds", 0.25, "--steps", "2", "--runs", 1, "--warmup", 0, "--threads", 1,
                                   "--device", "cpu", "-o", target)
    assert code == 0, stderr
    (r,) = json.loads(target.read_text())["results"]
    assert r["task"] == "sample" and r["rtf"] > 0 and r["output_samples"] == int(0.25 * 22050)


def test_bench_user_errors(tmp_path, run_main):
    for args, word in [((), "--recipe"), (("--recipe", TINY, "-c", tmp_path / "x.pt"), "--recipe"),
                       (("--recipe", tmp_path / "none.toml"), "none.toml"), (("--recipe", TINY, "--steps", "a"), "--steps"),
                       (("--recipe", TINY, "--seconds", "0"), "--seconds")]:
        code, _, stderr = run_cli(run_main, "bench", *args, "-o", tmp_path / "b.json")
        assert code == 2, (args, stderr)
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and word in errors[0], (args, stderr)
    assert not (tmp_path / "b.json").exists()
