"""`audiodiff eval` end to end on tiny checkpoints (the session's trained vocoder, a generator
trained here): tables, JSON, report."""
from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import pytest
import soundfile as sf
from rich.console import Console

from audiodiff.audio import load_audio
from audiodiff.evaluation import metrics as M
from audiodiff.evaluation.evaluate import excerpt
from audiodiff.recipe import load_recipe
from audiodiff.training import TrainOptions, train

from conftest import SR, TINY, tiny_overrides
from test_eval_metrics import voiced


def run_cli(run_main, *args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the console script's entry point (conftest.run_main)."""
    result = run_main(*args)
    return result.returncode, result.stdout, result.stderr


def _train(out: Path, root: Path, *extra: str) -> Path:
    recipe = load_recipe(TINY, tiny_overrides(root, max_steps=2) + list(extra))
    return train(recipe, out, TrainOptions("cpu", Console(file=io.StringIO()), progress=False))


@pytest.fixture(scope="module")
def vocoder_ckpt(trained_tiny) -> Path:
    return trained_tiny / "step-00000002.pt"  # the tiny vocoder, 2 steps (conftest)


@pytest.fixture(scope="module")
def generator_ckpt(tmp_path_factory, synth_folder) -> Path:
    return _train(tmp_path_factory.mktemp("eval_gen"), synth_folder, "model.conditional=false")


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("eval_refs")
    paths = []
    for i, (seconds, f0) in enumerate([(1.5, 130.0), (1.2, 210.0)]):
        paths.append(root / f"voice{i}.wav")
        sf.write(paths[-1], voiced(seconds, f0=f0, seed=i), SR, subtype="PCM_16")
    return paths


def _linked(report: Path) -> list[str]:
    return re.findall(r"(?:src|href)='([^']+)'", report.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_eval_vocoder_end_to_end(tmp_path, monkeypatch, run_main, vocoder_ckpt, references):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    pytest.importorskip("matplotlib")
    out = tmp_path / "eval"
    code, stdout, stderr = run_cli(run_main, "eval", "-c", vocoder_ckpt, *references,
                                   "--steps", "2,1", "--out-dir", out, "--device", "cpu")
    assert code == 0, stderr
    for word in ("reference", "Griffin-Lim", "1 steps", "2 steps", "PESQ-WB", "STOI", "MCD", "DNSMOS OVRL"):
        assert word in stdout, word
    assert "report.html" in stderr

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 5  # two files x (reference, the two Griffin-Lims, 1 step, 2 steps)
    labels = ["reference", "Griffin-Lim", "Griffin-Lim, band gains", "1 steps", "2 steps"]
    assert [r["label"] for r in rows[:5]] == labels
    doc = json.loads((out / "results.json").read_text())
    means = {m["label"]: m for m in doc["means"]}
    assert list(means) == labels
    ref, gl, model = means["reference"], means["Griffin-Lim"], means["2 steps"]
    assert ref["pesq_wb"] == pytest.approx(4.64, abs=0.02) and ref["stoi"] == pytest.approx(1.0, abs=1e-6)
    assert ref["log_mel"] == 0 and ref["mr_stft"] == 0 and ref["mcd_db"] == 0 and ref["f0_rmse_cents"] == 0
    # Griffin-Lim from the true mel beats a model trained for 2 steps, and both are below the ceiling
    assert 0 < gl["log_mel"] < model["log_mel"] and gl["stoi"] > model["stoi"] and gl["pesq_wb"] < ref["pesq_wb"]
    assert model["rtf"] > 0 and model["files"] == 2
    assert doc["meta"]["kind"] == "vocoder" and doc["meta"]["steps"] == [1, 2]
    # DNSMOS on every row: the reference row rates the clean clip itself, Griffin-Lim its own output
    dnsmos = M.DnsmosScorer()
    keys = [m.key for m in M.CLIP_METRICS]
    for path in references:
        by_system = {r["system"]: r for r in doc["rows"] if r["file"] == path.stem}
        ref_row, gl_row = by_system["reference"], by_system["griffin_lim"]
        assert [ref_row[k] for k in keys] == pytest.approx(list(dnsmos.score(load_audio(path, SR), SR).values()),
                                                           abs=1e-9)
        gl_saved = dnsmos.score(load_audio(out / gl_row["audio"], SR), SR)  # 16-bit: close, not equal
        assert [gl_row[k] for k in keys] == pytest.approx(list(gl_saved.values()), abs=0.05)
        for row in by_system.values():
            assert all(1.0 <= row[k] <= 5.0 for k in keys), row
    for mean in means.values():
        group = [r for r in doc["rows"] if r["label"] == mean["label"]]
        assert [mean[k] for k in keys] == pytest.approx([sum(r[k] for r in group) / len(group) for k in keys])
    assert all(1.0 <= float(rows[0][k]) <= 5.0 for k in keys)  # and in the CSV

    report = out / "report.html"
    html = report.read_text(encoding="utf-8")
    assert "<audio" in html and "img/metrics.png" in html and "Griffin-Lim" in html and "DNSMOS OVRL" in html
    links = _linked(report)
    assert all(not link.startswith("/") for link in links)  # relative: the folder can move
    for link in links:
        assert (out / link).is_file(), link
    assert sum(link.endswith(".png") for link in links) == 1 + 2 * 5
    assert sum(link.endswith(".wav") for link in links) == 2 * 5
    wav, sr = sf.read(out / "audio" / "voice0" / "steps-2.wav")
    assert sr == SR and len(wav) == int(1.5 * SR)  # trimmed to the reference's length


@pytest.mark.slow
def test_eval_unconditional(tmp_path, monkeypatch, run_main, generator_ckpt, synth_folder):
    pytest.importorskip("matplotlib")
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    out = tmp_path / "eval_gen"
    code, stdout, stderr = run_cli(run_main, "eval", "-c", generator_ckpt, synth_folder, "-n", 2,
                                   "--seconds", 0.5, "--steps", 2, "--out-dir", out, "--device", "cpu")
    assert code == 0, stderr
    doc = json.loads((out / "results.json").read_text())
    labels = [r["label"] for r in doc["rows"]]
    assert labels == ["reference", "reference (half vs half)", "white noise", "2 steps"]
    ref, halves, noise, model = doc["rows"]
    for key in ("mean_log_mel_dist", "loudness_w1_db", "flatness_w1"):
        assert model[key] > 0 and noise[key] > halves[key] >= 0 and ref[key] is None, key
    # mean DNSMOS of each row's clips; the reference's over the middle 0.5 s of each reference clip
    keys = [m.key for m in M.CLIP_METRICS]
    clips = [load_audio(p, SR) for p in sorted(synth_folder.glob("*.wav"))]
    expected = M.DnsmosScorer().mean([excerpt(c, SR // 2) for c in clips], SR)
    assert {k: ref[k] for k in keys} == pytest.approx(expected, abs=1e-9) and ref["clips"] == len(clips)
    for row in (ref, noise, model):
        assert all(1.0 <= row[k] <= 5.0 for k in keys), row
    assert all(halves[k] is None for k in keys)
    assert noise["dnsmos_bak"] < 2.0, noise  # white noise: no clean background
    assert len(model["audio"]) == 2 and all((out / a).is_file() for a in model["audio"])
    assert "mean log-mel dist" in stdout
    report = out / "report.html"
    for link in _linked(report):
        assert (out / link).is_file(), link
    html = report.read_text()
    assert "reference clips" in html and "2 steps" in html and html.count("<audio") >= 2 + 2 + 2


def test_eval_user_errors(tmp_path, monkeypatch, run_main, vocoder_ckpt, references):
    cases = [
        (("eval", "-c", vocoder_ckpt, tmp_path / "missing.wav"), "missing.wav"),
        (("eval", "-c", vocoder_ckpt, references[0], "--steps", "2,x"), "--steps"),
        (("eval", "-c", vocoder_ckpt, references[0], "--steps", "0"), "--steps"),
        (("eval", "-c", tmp_path / "nope.pt", references[0]), "nope.pt"),
    ]
    for args, word in cases:
        code, stdout, stderr = run_cli(run_main, *args, "--out-dir", tmp_path / "o")
        assert code == 2, (args, stderr)
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and word in errors[0] and "Traceback" not in stderr, stderr
    assert not (tmp_path / "o" / "results.json").exists()


def test_eval_without_the_extra_says_what_to_install(tmp_path, monkeypatch, run_main, vocoder_ckpt, references):
    monkeypatch.setitem(sys.modules, "pystoi", None)  # as if not installed
    code, _, stderr = run_cli(run_main, "eval", "-c", vocoder_ckpt, references[0], "--out-dir", tmp_path / "o")
    assert code == 2
    assert 'pip install "audiodiff[eval]"' in stderr and "pystoi" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "o").exists()


def test_eval_notes_a_schedule_searched_on_a_parent(tmp_path, vocoder_ckpt, references):
    """A checkpoint whose 3-step schedule was inherited from its parent: eval logs the note
    for that step count only (2 steps run the recipe's rule), and still scores both."""
    from audiodiff.checkpoint import export_inference_copy, load_checkpoint
    from audiodiff.evaluation.evaluate import EvalRequest, evaluate
    from audiodiff.searched_schedule import SearchedSchedule

    base = load_checkpoint(vocoder_ckpt)
    found = SearchedSchedule((2e-4, 0.05, 0.4), "ddim", 0.5, "pesq_wb", 2.0, 5)
    child = base.with_defaults(base.defaults.with_schedules({3: found}).inherited("parent.pt"))
    ckpt = export_inference_copy(child, tmp_path / "child.pt")
    lines: list[str] = []
    result = evaluate(EvalRequest(ckpt, references[:1], tmp_path / "o", steps=[2, 3]), log=lines.append)
    notes = [line for line in lines if line.startswith("note:")]
    assert notes == ["note: the 3-step schedule was searched on parent.pt, not on these weights; after further "
                     "training it can score below the recipe's rule: `audiodiff schedule search` fits one to this "
                     "checkpoint"]
    assert {m["steps"] for m in result.means if m["system"] == "model"} == {2, 3}
