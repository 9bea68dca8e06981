"""The last faults (issue 23, item 7): a full disk or an unwritable output, a sample too long
for memory, and a run folder that another training holds. Each gives one line naming the
file, folder or option, exit code 2 at the command line, no traceback, and no partial or
temp file.

A full disk is simulated two ways: in this process by making the low-level write raise
ENOSPC, and in a subprocess for real, with a file-size limit (RLIMIT_FSIZE: a write past it
fails with EFBIG, as on a full disk, and needs no root, unlike a tiny tmpfs)."""
from __future__ import annotations

import errno
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.atomic import append_text, atomic_path, check_writable
from audiodiff.audio import save_audio, save_mel
from audiodiff.errors import AudiodiffError, MemoryBudgetError, OutputError, RunFolderLocked, first_line
from audiodiff.pretrained import DEFAULTS
from audiodiff.recipe import load_recipe
from audiodiff.run_lock import LOCK_NAME, lock_run_folder

from conftest import REPO_ROOT, SR, THREADS, TINY, chirp, tiny_overrides, train_run

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_first_line_quotes_one_line_of_a_foreign_error():
    """How every one-line error quotes another library's exception: its first line, cut
    to the limit, or its class name when it says nothing."""
    assert first_line(ValueError("  bad header\n  at byte 12\n")) == "bad header"
    assert first_line(RuntimeError("x" * 300), 120) == "x" * 120
    assert first_line(KeyError()) == "KeyError" and first_line(OSError("\n")) == "OSError"


def cli(*args, file_limit: int | None = None, cache: Path | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m audiodiff ARGS` in a subprocess; `file_limit` bytes caps every file it writes.

    Under the limit Python writes no bytecode (its .pyc writer ignores a short write, so a
    module changed since its last compile would get a truncated .pyc that breaks every later
    import) and numba's cache goes to the throwaway folder `cache`."""
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), COLUMNS="200")
    if file_limit:
        env.update(PYTHONDONTWRITEBYTECODE="1", NUMBA_CACHE_DIR=str(cache))

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))  # Python ignores SIGXFSZ: EFBIG

    return subprocess.run([sys.executable, "-m", "audiodiff", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO_ROOT, preexec_fn=limit if file_limit else None)


def assert_one_line_error(result, *words) -> str:
    """Exit 2, no traceback, one `error:` line on stderr holding each of `words`."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert str(word) in errors[0], (word, errors[0])
    return errors[0]


def leftovers(folder: Path) -> list[str]:
    """Temp files (atomic_path's `.NAME.*.tmp`) anywhere below `folder`."""
    return sorted(str(p) for p in folder.rglob("*.tmp"))


# ------------------------------------------------------------------ a full disk, in this process
def test_atomic_path_full_disk_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    target.write_text("old")
    real = Path.write_text

    def half_then_enospc(self, data, *args, **kwargs):  # writes a partial file, then the disk is full
        real(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", half_then_enospc)
    with pytest.raises(OutputError) as info:
        with atomic_path(target) as tmp:
            tmp.write_text('{"a": 1, "b": 2}')
    message = str(info.value)
    assert str(target) in message and "No space left on device" in message and "\n" not in message
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_save_mel_full_disk(tmp_path, monkeypatch):
    def enospc(file, arr, *args, **kwargs):
        file.write(b"\x93NUMPY partial")
        raise ENOSPC

    monkeypatch.setattr(np, "save", enospc)
    with pytest.raises(OutputError, match="mel.npy.*No space left"):
        save_mel(tmp_path / "mel.npy", torch.zeros(80, 4))
    assert list(tmp_path.iterdir()) == []


def test_save_audio_libsndfile_error(tmp_path, monkeypatch):
    def failing(file, data, *args, **kwargs):
        Path(file).write_bytes(b"RIFF partial")
        raise sf.LibsndfileError(2, "Error writing ")  # what a full disk gives from libsndfile (code 2: System error)

    monkeypatch.setattr(sf, "write", failing)
    with pytest.raises(OutputError) as info:
        save_audio(tmp_path / "out.wav", np.zeros(100, np.float32), SR)
    assert str(tmp_path / "out.wav") in str(info.value) and "free on its disk" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_append_text_full_disk_leaves_no_half_line(tmp_path, monkeypatch):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\n')
    real = os.write
    target = os.stat(log).st_ino

    def half_then_enospc(fd, data):
        if os.fstat(fd).st_ino != target:
            return real(fd, data)
        real(fd, bytes(data[:4]))
        raise ENOSPC

    monkeypatch.setattr(os, "write", half_then_enospc)
    try:
        with pytest.raises(OutputError, match="metrics.jsonl.*No space left"):
            append_text(log, '{"step": 2, "loss": 0.5}\n')
    finally:
        monkeypatch.undo()
    assert log.read_text() == '{"step": 1}\n'


def test_unwritable_output_fails_before_any_work(tmp_path, tiny_ckpt, run_main):
    sf.write(tmp_path / "in.wav", chirp(0.2, amp=0.3), SR)
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    result = run_main("vocode", tmp_path / "in.wav", "-c", tiny_ckpt, "-o", blocker / "out.wav", "--device", "cpu")
    line = assert_one_line_error(result, blocker, "cannot write")
    assert "Model:" not in result.stderr, "checked before the model was loaded"
    assert f"{blocker} is a file, not a folder" in line, line
    result = run_main("mel", tmp_path / "in.wav", "-c", tiny_ckpt, "-o", blocker / "mel.npy")
    assert_one_line_error(result, blocker)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "in.wav"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="Permission denied"):
            check_writable(folder)
        with pytest.raises(OutputError, match="Permission denied"):
            save_audio(folder / "out.wav", np.zeros(10, np.float32), SR)
    finally:
        folder.chmod(0o755)
    assert list(folder.iterdir()) == []


# ------------------------------------------------------------------ a full disk, for real, in a subprocess
@pytest.mark.slow
def test_vocode_full_disk_one_line_no_partial_file(tmp_path, tiny_ckpt):
    sf.write(tmp_path / "in.wav", chirp(1.0, amp=0.3), SR)
    out = tmp_path / "out"
    out.mkdir()
    # the 1 s output is 44 KB of 16-bit audio: the write fails part way (EFBIG, like a full disk)
    result = cli("vocode", tmp_path / "in.wav", "-c", tiny_ckpt, "-o", out / "x.wav", "--steps", 2, "--device", "cpu",
                 file_limit=20_000, cache=tmp_path / "cache")
    assert_one_line_error(result, out / "x.wav", "cannot write")
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_export_full_disk_one_line_no_partial_file(tmp_path, tiny_ckpt):
    out = tmp_path / "out"
    # the float16 copy is ~700 KB: torch.save's writer fails with a RuntimeError, not an OSError
    result = cli("export", tiny_ckpt, "-o", out / "small.pt", file_limit=20_000, cache=tmp_path / "cache")
    assert_one_line_error(result, out / "small.pt", "cannot write")
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_training_full_disk_stops_with_one_line(tmp_path, synth_folder):
    run = tmp_path / "run"
    # the JSON files and the validation clip fit; the checkpoint (model, EMA, Adam: ~5 MB) does not
    args = [a for item in tiny_overrides(synth_folder, max_steps=2, checkpoint_every=2) for a in ("--set", item)]
    result = cli("train", TINY, "--out-dir", run, "--device", "cpu", "--set", "model.residual_layers=2",
                 "--set", "model.residual_channels=8", *args, file_limit=300_000, cache=tmp_path / "cache")
    line = assert_one_line_error(result, run, "cannot write")
    assert "step-00000002.pt" in line, line
    assert leftovers(run) == [] and not list(run.glob("step-*.pt"))


# ------------------------------------------------------------------ a sample too long for memory
@pytest.mark.skipif(not DEFAULTS["generator"].is_file(), reason="no default generator is shipped")
def test_sample_of_ten_million_seconds_is_refused_at_once(tmp_path):
    """One line naming --seconds and the limit, within seconds, without allocating the clip:
    the peak memory of the whole command (a child of a wrapper, measured with getrusage) is
    that of loading torch and the model."""
    wrapper = ("import resource, subprocess, sys; "
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "sys.stderr.write(r.stderr); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "audiodiff", "sample",
                             "--seconds", "10000000", "-o", tmp_path / "long.wav", "--device", "cpu"],
                            capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                            env=dict(os.environ, OMP_NUM_THREADS=str(THREADS), COLUMNS="200"))
    elapsed = time.monotonic() - start
    line = assert_one_line_error(result, "--seconds 10000000", "at most", "fits here")
    assert "Model:" not in result.stderr
    peak_gib = int(result.stdout.strip().splitlines()[-1]) / 2 ** 20  # ru_maxrss is in KiB on Linux
    assert peak_gib < 2.0, (peak_gib, line)
    assert elapsed < 60, elapsed
    assert list(tmp_path.iterdir()) == []


def tiny_generator():
    from audiodiff.inference import Generator
    from audiodiff.networks import build_network

    recipe = load_recipe(TINY, ["model.conditional=false", "model.residual_layers=2", "model.residual_channels=8"])
    torch.manual_seed(0)
    return Generator(build_network(recipe), recipe, device="cpu")


def test_generate_refuses_what_does_not_fit(monkeypatch):
    import audiodiff.memory

    generator = tiny_generator()
    monkeypatch.setattr(audiodiff.memory, "available_memory", lambda: 2 ** 30)  # 1 GiB free
    with pytest.raises(MemoryBudgetError) as info:
        generator.generate(600.0, count=2, steps=2)
    message = str(info.value)
    # 600 s x 2 clips x 22050 Hz x 4 bytes x 16 copies = 1.7 GB, more than 1 GiB; the 768 MiB
    # beside the headroom hold 285 s per clip
    assert "--seconds 600 x -n 2 clips" in message and "1.0 GiB of memory" in message
    assert "at most 285 s per clip" in message
    assert generator.generate(0.05, count=2, steps=2).shape == (2, round(0.05 * SR))
    for bad in (float("inf"), float("nan"), -1.0):
        with pytest.raises(AudiodiffError, match="--seconds"):
            generator.generate(bad, steps=2)


@pytest.mark.skipif(not DEFAULTS["generator"].is_file(), reason="no default generator is shipped")
def test_sample_cli_names_the_limit(tmp_path, monkeypatch, run_main):
    import audiodiff.memory

    monkeypatch.setattr(audiodiff.memory, "available_memory", lambda: 2 ** 30)
    result = run_main("sample", "--seconds", 3600, "-o", tmp_path / "hour.wav", "--device", "cpu")
    assert_one_line_error(result, "--seconds 3600", "1.0 GiB of memory available", "at most")
    assert list(tmp_path.iterdir()) == []


MEMORY_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
from test_faults import tiny_generator

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
g = tiny_generator()
g.generate(0.1, steps=2)
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
before = status("VmRSS")
g.generate({seconds}, count={count}, steps=2, sampler="ddim")
print(status("VmHWM") - before, g.sample_rate)
"""


@pytest.mark.slow
def test_sample_memory_estimate_bounds_the_peak(tmp_path):
    """The refusal's estimate (WHOLE_SIGNAL_COPIES float32 copies of the signal, plus
    HEADROOM) bounds what sampling takes: in a fresh process, the peak RSS of a long DDIM
    sample (the hungrier sampler) over the RSS just before it (the peak is reset there, so
    start-up peaks do not count), in float32 copies of the signal."""
    from audiodiff.memory import HEADROOM, WHOLE_SIGNAL_COPIES

    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("the peak RSS cannot be reset here (/proc/self/clear_refs)")
    count, seconds = 4, 60
    script = MEMORY_SCRIPT.format(tests=str(Path(__file__).parent), seconds=seconds, count=count)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=REPO_ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr
    grown, rate = (int(x) for x in result.stdout.split())
    signal = 4 * count * seconds * rate
    copies = grown / signal
    assert 1 < copies <= WHOLE_SIGNAL_COPIES + HEADROOM / signal, copies


# ------------------------------------------------------------------ a run folder another training holds
HOLDER = ("import sys; from audiodiff.run_lock import lock_run_folder; lock = lock_run_folder(sys.argv[1]); "
          "print('held', flush=True); sys.stdin.readline()")


def hold(folder: Path) -> subprocess.Popen:
    """A process that holds `folder`'s lock until its stdin gets a line (or it is killed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


def quick_recipe(synth_folder, **train):
    return load_recipe(TINY, ["model.residual_layers=2", "model.residual_channels=8",
                              *tiny_overrides(synth_folder, max_steps=2, **train)])


def test_second_trainer_on_a_held_folder_fails_at_once(tmp_path, synth_folder):
    run = tmp_path / "run"
    holder = hold(run)
    try:
        start = time.monotonic()
        with pytest.raises(RunFolderLocked) as info:
            train_run(quick_recipe(synth_folder), run)
        message = str(info.value)
        assert time.monotonic() - start < 10
        assert str(run) in message and f"pid {holder.pid} " in message and socket.gethostname() in message
        assert "\n" not in message
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing scanned, split or written
    finally:
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=60)
    last, _ = train_run(quick_recipe(synth_folder), run)  # the holder has ended: training starts
    assert last is not None and last.name == "step-00000002.pt"
    with lock_run_folder(run):  # and the finished run released its lock
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = hold(tmp_path)
    with pytest.raises(RunFolderLocked):
        lock_run_folder(tmp_path)
    holder.kill()  # SIGKILL: no clean-up code runs
    holder.wait(timeout=60)
    lock = lock_run_folder(tmp_path)
    assert f"pid {os.getpid()} " in (tmp_path / LOCK_NAME).read_text()
    lock.release()
    assert (tmp_path / LOCK_NAME).read_text() == ""  # a released lock names no one


def test_cli_train_on_a_held_folder(tmp_path, synth_folder, run_main):
    run = tmp_path / "run"
    with lock_run_folder(run):  # a second open file of the lock: flock treats it as another holder
        args = [a for item in tiny_overrides(synth_folder) for a in ("--set", item)]
        result = run_main("train", TINY, "--out-dir", run, "--device", "cpu", *args)
    assert_one_line_error(result, run, f"pid {os.getpid()} ", "another training")


def test_a_failed_run_releases_its_lock(tmp_path, synth_folder):
    run = tmp_path / "run"
    empty = tmp_path / "no-audio"
    empty.mkdir()
    with pytest.raises(AudiodiffError):
        train_run(load_recipe(TINY, tiny_overrides(empty)), run)
    with lock_run_folder(run):
        pass
    # a run refused before it wrote anything leaves no folder behind, not even its lock file
    with pytest.raises(AudiodiffError, match="missing.pt"):
        train_run(quick_recipe(synth_folder), tmp_path / "new" / "run", init=tmp_path / "missing.pt")
    assert not (tmp_path / "new").exists()
