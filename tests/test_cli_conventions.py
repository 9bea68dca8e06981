"""The command line's conventions, the same in every command: `-h`, shell completion,
enumerated options that show and check their choices, one naming rule for outputs
(`-o/--output FILE`, `--out-dir DIR`; the old spellings still work, with a note), folders
as inputs, the "Model:" line, `info --json`, and `--sampler`/`--precision` wherever
speed or quality is measured. Through the console script's entry point, in this process
(conftest.run_main)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.audio import MelSpectrogram
from audiodiff.checkpoint import load_checkpoint, save_searched_copy
from audiodiff.devices import DEVICE_CHOICES, is_device_name
from audiodiff.evaluation.metrics import PAIR_METRICS
from audiodiff.pretrained import DEFAULTS, KINDS
from audiodiff.recipe import PRECISIONS, load_recipe
from audiodiff.samplers import SAMPLERS
from audiodiff.schedule_search import METRICS, resolve_metric
from audiodiff.searched_schedule import LEGACY_METRIC_NAMES, SearchedSchedule

from conftest import REPO_ROOT, SR, TINY, chirp, sine

DOCS = REPO_ROOT / "docs" / "commands.md"


def commands() -> dict[str, object]:
    """Every command of the app, by its path ('vocode', 'schedule search'), as click sees it."""
    from typer.main import get_command

    from audiodiff.cli import app

    found = {}

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        else:
            found[" ".join(path)] = cmd

    walk(get_command(app), [])
    return found


def plain(text: str) -> str:
    """Help text without rich's boxes, whitespace collapsed (so wrapped words read on)."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def one_error(result, *words) -> str:
    """Exit 2, no traceback, exactly one stderr line, `error: ...` naming each of `words`."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for word in words:
        assert str(word) in lines[0], (word, lines[0])
    return lines[0]


def first_line(stderr: str) -> str:
    """The first line on stderr after any deprecation notes."""
    return next(line for line in stderr.splitlines() if not line.startswith("note:"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """A folder of two short clips, one in a subfolder."""
    root = tmp_path_factory.mktemp("conv_clips")
    (root / "sub").mkdir()
    sf.write(root / "a.wav", sine(0.3, 330.0), SR, subtype="PCM_16")
    sf.write(root / "sub" / "b.wav", chirp(0.3, seed=1), SR, subtype="PCM_16")
    return root


# ------------------------------------------------------------------ -h, completion, usage lines
def test_dash_h_on_every_command(run_main):
    found = commands()
    assert {"train", "vocode", "sample", "mel", "info", "recipes", "export", "eval", "bench", "data check",
            "schedule search"} <= set(found)
    for path in ["", "data", "schedule", *found]:
        result = run_main(*path.split(), "-h")
        assert result.returncode == 0, (path, result.stderr)
        assert "Usage: audiodiff" in result.stdout and "--help" in result.stdout, path
        assert result.stdout == run_main(*path.split(), "--help").stdout, path


def test_shell_completion_is_on_and_completes_choices(run_main, monkeypatch):
    top = plain(run_main("-h").stdout)
    assert "--install-completion" in top and "--show-completion" in top
    script = run_main("--show-completion", "bash")
    assert script.returncode == 0 and "_AUDIODIFF_COMPLETE" in script.stdout
    monkeypatch.setenv("_AUDIODIFF_COMPLETE", "complete_bash")
    for words, expected in [("audiodiff vocode --sampler ", list(SAMPLERS)),
                            ("audiodiff bench --precision ", list(PRECISIONS)),
                            ("audiodiff sample --device c", ["cpu", "cuda"]),
                            ("audiodiff schedule search --metric pe", ["pesq_wb"])]:
        monkeypatch.setenv("COMP_WORDS", words)
        monkeypatch.setenv("COMP_CWORD", str(len(words.split()) - (0 if words.endswith(" ") else 1)))
        result = run_main()
        assert result.stdout.split() == expected, (words, result.stdout)


def _heading_options(heading: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", heading))


def test_usage_lines_in_the_docs_match_the_help():
    """Each `## audiodiff CMD ...` heading of docs/commands.md names exactly the options
    `audiodiff CMD --help` shows (any of an option's spellings), and every command has one."""
    headings = re.findall(r"^## `audiodiff ([a-z ]+?)(?= [A-Z\[\-]|`)(.*)`\s*$", DOCS.read_text(), flags=re.M)
    documented = {name.strip(): rest for name, rest in headings}
    found = commands()
    assert set(documented) == set(found), (set(documented) ^ set(found))
    for name, cmd in found.items():
        named = _heading_options(documented[name])
        visible = [p for p in cmd.params if p.param_type_name == "option" and not getattr(p, "hidden", False)
                   and "--help" not in p.opts]
        spellings = {o for p in visible for o in (*p.opts, *p.secondary_opts)}
        assert named <= spellings, (name, named - spellings)
        missing = [p.opts[0] for p in visible if not named & {*p.opts, *p.secondary_opts}]
        assert not missing, (name, missing)


# ------------------------------------------------------------------ enumerated options
ENUMERATED = [
    # (command, its other arguments, option, the option's choices as help shows them)
    ("vocode", ("in.wav",), "--device", DEVICE_CHOICES),
    ("vocode", ("in.wav",), "--sampler", tuple(SAMPLERS)),
    ("vocode", ("in.wav",), "--precision", PRECISIONS),
    ("sample", ("--seconds", "1", "-o", "x.wav"), "--sampler", tuple(SAMPLERS)),
    ("sample", ("--seconds", "1", "-o", "x.wav"), "--precision", PRECISIONS),
    ("train", ("tiny",), "--device", DEVICE_CHOICES),
    ("eval", ("in.wav",), "--sampler", tuple(SAMPLERS)),
    ("eval", ("in.wav",), "--precision", PRECISIONS),
    ("bench", ("--recipe", "tiny"), "--sampler", tuple(SAMPLERS)),
    ("bench", ("--recipe", "tiny"), "--precision", PRECISIONS),
    ("bench", ("--recipe", "tiny"), "--device", DEVICE_CHOICES),
    ("schedule search", ("in.wav", "-c", "x.pt"), "--metric", tuple(METRICS)),
    ("schedule search", ("in.wav", "-c", "x.pt"), "--guard", tuple(METRICS)),
]


@pytest.mark.parametrize("command, args, option, choices", ENUMERATED, ids=[f"{c} {o}" for c, _, o, _ in ENUMERATED])
def test_enumerated_option_shows_its_choices_and_rejects_others(command, args, option, choices, tmp_path, run_main):
    shown = plain(run_main(*command.split(), "-h").stdout).split(option, 1)[1]
    for choice in choices:
        assert choice in shown, (option, choice)
    result = run_main(*command.split(), *args, option, "nonsense", cwd=tmp_path)
    one_error(result, f"'{option}'", "'nonsense'", "is not one of", choices[0], f"audiodiff {command} -h")
    assert list(tmp_path.iterdir()) == []


def test_cuda_n_is_a_device_and_search_metrics_are_evals():
    assert all(is_device_name(n) for n in ("cpu", "cuda", "cuda:0", "cuda:12", "auto"))
    assert not any(is_device_name(n) for n in ("cuda:", "cuda:x", "tpu", "CPU", "cuda:N"))
    assert tuple(METRICS) == tuple(m.key for m in PAIR_METRICS)  # one key set, one direction
    assert all(METRICS[m.key].better == m.better for m in PAIR_METRICS)
    assert {old: resolve_metric(old) for old in LEGACY_METRIC_NAMES} == {
        "pesq": "pesq_wb", "logmel": "log_mel", "mrstft": "mr_stft"}


# ------------------------------------------------------------------ one naming rule for outputs
def test_train_out_dir_and_its_old_spelling(tmp_path, run_main, monkeypatch):
    import audiodiff.training

    seen = []
    monkeypatch.setattr(audiodiff.training, "train",
                        lambda recipe, out, **kw: seen.append(Path(out)) or Path(out) / "step-00000001.pt")
    new = run_main("train", TINY, "--out-dir", tmp_path / "new", "--device", "cpu")
    assert new.returncode == 0 and "deprecated" not in new.stderr, new.stderr
    old = run_main("train", TINY, "--out", tmp_path / "old", "--device", "cpu")
    assert old.returncode == 0, old.stderr
    assert old.stderr.splitlines()[0] == "note: --out is deprecated; use --out-dir (same meaning)"
    assert seen == [tmp_path / "new", tmp_path / "old"]
    both = run_main("train", TINY, "--out", tmp_path / "a", "--out-dir", tmp_path / "b")
    assert both.returncode == 2 and "--out is the old name of --out-dir" in both.stderr
    assert "--out " not in plain(run_main("train", "-h").stdout).replace("--out-dir", "")  # hidden


def test_search_output_and_its_old_spelling_with_old_metric_names(tmp_path, tiny_ckpt, clips, run_main):
    new = run_main("schedule", "search", "-c", tiny_ckpt, clips, "--steps", "2", "--metric", "log_mel",
                   "--budget-minutes", "0", "-o", tmp_path / "new.pt", "--device", "cpu")
    assert new.returncode == 0, new.stderr
    assert "note:" not in new.stderr and first_line(new.stderr).startswith("Model: ")
    assert load_checkpoint(tmp_path / "new.pt").defaults.schedules[2].metric == "log_mel"
    old = run_main("schedule", "search", "-c", tiny_ckpt, clips, "--steps", "2", "--metric", "logmel",
                   "--guard", "mrstft", "--budget-minutes", "0", "--out", tmp_path / "old.pt", "--device", "cpu")
    assert old.returncode == 0, old.stderr
    notes = [line for line in old.stderr.splitlines() if line.startswith("note:")]
    assert notes == ["note: --metric logmel is deprecated; its name is now log_mel",
                     "note: --guard mrstft is deprecated; its name is now mr_stft",
                     "note: --out is deprecated; use -o/--output (same meaning)"]
    found = load_checkpoint(tmp_path / "old.pt").defaults.schedules[2]
    assert found.metric == "log_mel" and [g.metric for g in found.guard] == ["mr_stft"]
    assert "by log-mel L1 (log_mel), guard mr_stft" in old.stderr


def test_bench_output_and_its_old_spelling_with_sampler_and_precision(tmp_path, tiny_ckpt, run_main):
    common = ("bench", "-c", tiny_ckpt, "--seconds", 0.25, "--steps", 1, "--runs", 1, "--warmup", 0,
              "--threads", 1, "--device", "cpu", "--sampler", "ddim", "--precision", "bf16")
    new = run_main(*common, "-o", tmp_path / "new.json")
    assert new.returncode == 0, new.stderr
    assert first_line(new.stderr).startswith(f"Model: {tiny_ckpt} (vocoder, step 1, 22050 Hz, preset hifigan, cpu bf16")
    doc = json.loads((tmp_path / "new.json").read_text())
    assert (doc["meta"]["precision"], doc["meta"]["sampler"]) == ("bf16", "ddim")
    assert (doc["results"][0]["precision"], doc["results"][0]["sampler"]) == ("bf16", "ddim")
    assert "bf16 · sampler ddim" in plain(new.stdout)
    old = run_main(*common, "--json", tmp_path / "old.json")
    assert old.returncode == 0 and (tmp_path / "old.json").is_file(), old.stderr
    assert old.stderr.splitlines()[0] == "note: --json is deprecated; use -o/--output (same meaning)"


def test_eval_out_dir_old_spelling_with_sampler_and_precision(tmp_path, tiny_ckpt, run_main):
    sf.write(tmp_path / "ref.wav", chirp(0.4, amp=0.3), SR, subtype="PCM_16")
    result = run_main("eval", tmp_path / "ref.wav", "-c", tiny_ckpt, "--steps", 1, "--sampler", "ddim",
                      "--precision", "bf16", "--device", "cpu", "--threads", 1, "--out", tmp_path / "ev")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "note: --out is deprecated; use --out-dir (same meaning)"
    assert lines[1].startswith(f"Model: {tiny_ckpt} (vocoder, step 1, 22050 Hz, preset hifigan, cpu bf16")
    meta = json.loads((tmp_path / "ev" / "results.json").read_text())["meta"]
    assert (meta["sampler"], meta["precision"]) == ("ddim", "bf16")
    assert meta["sampling"] == {"1": "1 steps, default schedule, ddim eta 0"}


# ------------------------------------------------------------------ vocode: folders, inputs checked first
def test_vocode_folder_writes_one_file_per_input(tmp_path, tiny_ckpt, clips, run_main):
    mel = MelSpectrogram(load_recipe(TINY).audio)(torch.from_numpy(chirp(0.2, amp=0.3))).numpy()
    mels = tmp_path / "mels"
    mels.mkdir()
    np.save(mels / "m.npy", mel)
    (mels / "notes.txt").write_text("not an input")
    out = tmp_path / "out"
    result = run_main("vocode", clips, mels, "-c", tiny_ckpt, "--out-dir", out, "--steps", 2, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert first_line(result.stderr).startswith(f"Model: {tiny_ckpt} (vocoder, step 1")
    assert sorted(p.name for p in out.iterdir()) == ["a.wav", "b.wav", "m.wav"]
    assert sf.info(out / "a.wav").frames == round(0.3 * SR) and sf.info(out / "m.wav").frames == mel.shape[1] * 256


def test_vocode_inputs_are_checked_before_any_work(tmp_path, tiny_ckpt, clips, run_main):
    out = tmp_path / "out"
    cases = [
        (("vocode", clips, tmp_path / "missing.wav", "--out-dir", out), ["missing.wav", "not found"]),
        (("vocode", tmp_path / "empty", "--out-dir", out), ["empty", "no audio or mel files"]),
        (("vocode", clips, "-o", out / "x.wav"), ["-o", "2 inputs", "--out-dir"]),
        (("vocode", clips, "-o", out / "x.wav", "--out-dir", out), ["-o", "--out-dir"]),
        (("vocode", clips, clips / "a.wav", "--out-dir", out), ["a.wav", "both be written"]),
        (("vocode", clips / "a.wav", "--out-dir", clips), ["a.wav", "replace an input"]),
    ]
    (tmp_path / "empty").mkdir()
    for args, words in cases:
        result = run_main(*args, "-c", tiny_ckpt, "--device", "cpu")
        one_error(result, *words)
        assert "Model:" not in result.stderr
    assert not out.exists()


# ------------------------------------------------------------------ the Model line, info --json
def test_model_line_first_on_mel_and_info(tmp_path, tiny_ckpt, clips, run_main):
    mel = run_main("mel", clips / "a.wav", "-o", tmp_path / "a.npy", "-c", tiny_ckpt)
    assert mel.returncode == 0 and mel.stderr.startswith(f"Model: {tiny_ckpt} (vocoder, step 1, 22050 Hz"), mel.stderr
    info = run_main("info", "-c", tiny_ckpt)
    assert info.returncode == 0 and info.stderr.startswith(f"Model: {tiny_ckpt} (vocoder, step 1"), info.stderr


def test_info_json(tmp_path, tiny_ckpt, run_main):
    plain_ckpt = run_main("info", "-c", tiny_ckpt, "--json")
    assert plain_ckpt.returncode == 0, plain_ckpt.stderr
    doc = json.loads(plain_ckpt.stdout)
    assert set(doc) == {"checkpoint", "name", "kind", "step", "inference_only", "parameters", "sample_rate", "card",
                        "recipe", "inference"}
    assert (doc["checkpoint"], doc["kind"], doc["step"], doc["name"], doc["card"]) == (str(tiny_ckpt), "vocoder", 1,
                                                                                      None, None)
    assert doc["recipe"]["model"]["residual_layers"] == 2 and doc["recipe"]["audio"]["preset"] == "hifigan"
    inference = doc["inference"]
    assert inference["steps"] == {"value": 6, "from": "recipe rule"}
    assert inference["sampler"] == {"value": "ddpm", "from": "recipe rule"}
    assert inference["gain_adjust"] == {"value": False, "from": "recipe rule"}
    assert inference["inherited_from"] is None and inference["schedules"] == {}
    # a searched copy (its schedule named as checkpoints of earlier versions did): the checkpoint's own defaults
    found = SearchedSchedule((2e-4, 0.05, 0.4), "ddim", 0.25, "pesq", 3.5, 5)
    searched = save_searched_copy(load_checkpoint(tiny_ckpt), tmp_path / "s.pt", {3: found}, default_steps=3)
    doc = json.loads(run_main("info", "-c", searched, "--json").stdout)["inference"]
    assert doc["steps"] == {"value": 3, "from": "checkpoint"}
    assert doc["sampler"] == {"value": "ddim", "from": "searched schedule"} and doc["eta"]["value"] == 0.25
    assert doc["betas"]["value"] == pytest.approx([2e-4, 0.05, 0.4])
    assert doc["schedules"]["3"]["metric"] == "pesq_wb"


@pytest.mark.skipif(not all(DEFAULTS[k].is_file() for k in KINDS), reason="the default models are not shipped")
def test_info_json_of_the_shipped_models(run_main):
    result = run_main("info", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == set(KINDS)
    assert doc["vocoder"]["kind"] == "vocoder" and doc["vocoder"]["card"]["name"] == doc["vocoder"]["name"]
    assert doc["generator"]["kind"] == "generator" and "gain_adjust" not in doc["generator"]["inference"]
    assert all(s["metric"] in METRICS for s in doc["vocoder"]["inference"]["schedules"].values())
    assert [line.split(" (")[0] for line in result.stderr.splitlines()] == [
        f"Model: shipped default {kind} '{doc[kind]['name']}'" for kind in KINDS]


def test_search_ranks_by_any_of_evals_paired_metrics(tiny_ckpt):
    """Schedule search scores with eval's own scorer (metrics.PairScorer), so any paired
    metric can rank or guard; a legacy short name is read as its key."""
    from audiodiff.inference import Vocoder
    from audiodiff.schedule_search import Candidate, ClipScorer

    vocoder = Vocoder.from_checkpoint(tiny_ckpt)
    scorer = ClipScorer(vocoder, [torch.from_numpy(chirp(0.4, amp=0.3))], "mcd_db", guard=["stoi", "logmel"])
    assert (scorer.metric, scorer.guard, scorer.higher_is_better) == ("mcd_db", ("stoi", "log_mel"), False)
    scores = scorer.score_all(Candidate.geometric(1e-4, 0.5, 2))
    assert set(scores) == {"mcd_db", "stoi", "log_mel"} and scores["mcd_db"] > 0
    assert ClipScorer(vocoder, [torch.zeros(2048)], "pesq").higher_is_better
