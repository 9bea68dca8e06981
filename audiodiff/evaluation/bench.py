"""`audiodiff bench`: speed (real-time factor) and peak memory of sampling.

RTF = compute seconds / audio seconds (below 1 is faster than real time), the median
over `runs` timed runs after `warmup` untimed ones, through the public API:
`Vocoder.vocode` on a random mel of `seconds` of audio for a vocoder,
`Generator.generate` for an unconditional model. Each step count runs in a fresh
subprocess, so its peak resident memory (ru_maxrss; on CUDA also the allocator's
peak) is its own. With a recipe instead of a checkpoint the model has random weights
(the output projection drawn with std 0.01 so the output is not trivially zero): speed
does not depend on the weights, so it can be measured before training.

The protocol is that of benchmarks/vocode_rtf.py (a thin wrapper over this module)
and ../shared/bench/lmnt_diffwave_rtf.py, so their numbers compare as ratios.

    python -m audiodiff.evaluation.bench --child '{"steps": 6, ...}'   # one measurement (internal)
"""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from audiodiff.errors import AudiodiffError

RESULT_PREFIX = "RESULT_JSON "


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _peak_rss_gib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 2 ** 20 if sys.platform != "darwin" else kib / 2 ** 30


def _build(cfg: dict):
    """The model to measure: from a checkpoint, or a recipe with random weights."""
    import torch

    from audiodiff.inference import Generator, Vocoder, load_model
    from audiodiff.networks import build_network
    from audiodiff.recipe import load_recipe

    precision = cfg.get("precision") or "fp32"
    if cfg.get("checkpoint"):
        return load_model(cfg["checkpoint"], device=cfg["device"], precision=precision)
    recipe = load_recipe(cfg["recipe"], cfg.get("overrides", []))
    torch.manual_seed(cfg["seed"])
    network = build_network(recipe)
    torch.nn.init.normal_(network.output_projection.weight, std=0.01)  # non-trivial output
    cls = Vocoder if recipe.model.conditional else Generator
    return cls(network, recipe, device=cfg["device"], precision=precision, source=str(cfg["recipe"]))


def measure(cfg: dict, log: Callable[[str], None] = lambda _m: None) -> dict:
    """One step count in this process: build, warm up, time `runs` runs. Returns a plain dict.

    cfg keys: checkpoint or recipe (+ overrides), steps, seconds, runs, warmup, threads
    (0: torch's default), device, seed, chunk (0: the library default), precision
    (fp32, bf16, fp16), sampler (None: the checkpoint's choice), and for a vocoder
    gain_adjust and refine (None: the checkpoint's defaults).
    """
    import torch

    from audiodiff.devices import set_cpu_threads
    from audiodiff.inference import Vocoder

    set_cpu_threads(cfg.get("threads") or None)

    model = _build(cfg)
    if cfg.get("chunk"):
        model.chunk_samples = cfg["chunk"]
    device = model.device
    audio = model.recipe.audio
    sr, steps = audio.sample_rate, cfg["steps"]
    if isinstance(model, Vocoder):
        task = "vocode"
        frames = -(-int(round(cfg["seconds"] * sr)) // audio.hop_length)
        g = torch.Generator().manual_seed(cfg["seed"] + 1)
        u = torch.rand(audio.n_mels, frames, generator=g)
        mel = u * 10 - 9 if audio.compression == "ln" else 0.2 + 0.6 * u  # inside the preset's range

        plan = model.plan(steps=steps, sampler=cfg.get("sampler"), gain_adjust=cfg.get("gain_adjust"),
                          refine=cfg.get("refine"))

        def run(i: int):
            return model.vocode(mel, plan, seed=i)
    else:
        task = "sample"
        plan = model.plan(steps=steps, sampler=cfg.get("sampler"))

        def run(i: int):
            return model.generate(cfg["seconds"], count=1, plan=plan, seed=i)[0]
    model_rss = _peak_rss_gib()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(cfg["warmup"] + cfg["runs"]):
        t0 = time.perf_counter()
        wav = run(i)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        log(f"  [steps={steps}] {'warmup' if i < cfg['warmup'] else 'run'} {i}: {dt:.2f} s")
        if i >= cfg["warmup"]:
            times.append(dt)
    audio_s = wav.shape[-1] / sr
    med = statistics.median(times)
    result = dict(task=task, steps=steps, threads=torch.get_num_threads(), device=str(device),
                  precision=model.precision, sampler=plan.sampler, plan=plan.describe(), runs=cfg["runs"],
                  warmup=cfg["warmup"], times_s=[round(t, 4) for t in times], median_s=round(med, 4),
                  audio_seconds=round(audio_s, 4), rtf=round(med / audio_s, 5),
                  peak_rss_gib=round(_peak_rss_gib(), 3), model_rss_gib=round(model_rss, 3),
                  chunk_samples=model.chunk_samples, output_samples=int(wav.shape[-1]),
                  output_finite=bool(torch.isfinite(wav).all()),
                  n_params=sum(p.numel() for p in model.network.parameters()))
    if isinstance(model, Vocoder):
        result.update(gain_adjust=plan.gain_adjust, refine=plan.refine)
    if device.type == "cuda":
        result["cuda_peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 3)
    return result


def run_bench(*, checkpoint: str | Path | None = None, recipe: str | Path | None = None,
              overrides: Sequence[str] = (), steps: Sequence[int] = (1, 2, 4, 6), seconds: float = 10.0,
              runs: int = 3, warmup: int = 1, threads: int | None = None, device: str = "auto", seed: int = 0,
              chunk: int = 0, json_path: str | Path | None = None, log: Callable[[str], None] = lambda _m: None,
              gain_adjust: bool | None = None, refine: int | None = None, precision: str = "fp32",
              sampler: str | None = None) -> dict:
    """Measure each step count in a fresh subprocess; returns {"meta": ..., "results": [...]}.
    A vocoder runs with `vocode`'s mel consistency: `gain_adjust`, `refine` (None: the
    checkpoint's default); `precision` (the network's autocast) and `sampler` (None: the
    checkpoint's choice per step count, else ddpm) as in `vocode` and `sample`. The first
    line logged names the model (`model_info.model_line`); `json_path` gets the whole
    result, written atomically.

    Exactly one of `checkpoint` (trained weights) and `recipe` (random weights: a file or
    a shipped recipe's name) is given.
    User errors (missing files, bad values) raise AudiodiffError before anything runs.
    """
    import torch

    from audiodiff import __version__
    from audiodiff.checkpoint import load_checkpoint
    from audiodiff.consistency import check_options
    from audiodiff.devices import check_threads, resolve_device
    from audiodiff.model_info import model_line
    from audiodiff.precision import check_precision
    from audiodiff.recipe import load_recipe, resolve_recipe
    from audiodiff.samplers import SAMPLERS

    if (checkpoint is None) == (recipe is None):
        raise AudiodiffError("give either -c CHECKPOINT (trained weights) or --recipe RECIPE (random weights)")
    if seconds <= 0:
        raise AudiodiffError("--seconds must be positive")
    if runs < 1 or warmup < 0:
        raise AudiodiffError("--runs must be >= 1 and --warmup >= 0")
    check_threads(threads)
    if not steps or min(steps) < 1:
        raise AudiodiffError("--steps: step counts must be integers >= 1")
    if sampler is not None and sampler not in SAMPLERS:
        raise AudiodiffError(f"--sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")
    dev = resolve_device(device)
    check_precision(precision, dev, "--precision")
    if checkpoint is not None:
        data = load_checkpoint(checkpoint)
        parsed = data.recipe
        line = model_line(checkpoint, parsed, data.step, data.defaults, device=dev, precision=precision)
    else:
        parsed = load_recipe(recipe, list(overrides))
        line = model_line(recipe, parsed, 0, device=dev, precision=precision,
                          name=f"recipe {recipe} with random weights")
    check_options(gain_adjust, refine, parsed.model.conditional, str(checkpoint or recipe))
    log(line)
    base = dict(checkpoint=None if checkpoint is None else str(Path(checkpoint).resolve()),
                recipe=None if recipe is None else str(resolve_recipe(recipe).resolve()), overrides=list(overrides),
                seconds=float(seconds), runs=int(runs), warmup=int(warmup), threads=int(threads or 0),
                device=str(dev), seed=int(seed), chunk=int(chunk), gain_adjust=gain_adjust, refine=refine,
                precision=precision, sampler=sampler)
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    results = []
    for n in steps:
        log(f"steps={n}: {warmup} warm-up + {runs} timed run(s) in a fresh process")
        cmd = [sys.executable, "-m", "audiodiff.evaluation.bench", "--child", json.dumps(dict(base, steps=int(n)))]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, env=env)
        lines = [x for x in proc.stdout.splitlines() if x.startswith(RESULT_PREFIX)]
        if proc.returncode or not lines:
            tail = (proc.stdout.strip().splitlines() or ["no output"])[-1]
            raise AudiodiffError(f"benchmark of {n} steps failed (exit {proc.returncode}): {tail}")
        results.append(json.loads(lines[-1][len(RESULT_PREFIX):]))
    m = parsed.model
    meta = dict(package="audiodiff", version=__version__, torch_version=torch.__version__,
                python=platform.python_version(), cpu_model=cpu_model(), nproc=os.cpu_count(),
                device=str(dev), threads=results[0]["threads"], task=results[0]["task"], precision=precision,
                sampler=sampler,
                source="checkpoint" if checkpoint is not None else "recipe (random weights)",
                checkpoint=base["checkpoint"], recipe=base["recipe"], overrides=list(overrides),
                model=m.describe(),
                n_params=results[0]["n_params"], sample_rate=parsed.audio.sample_rate, seconds=float(seconds),
                runs=runs, warmup=warmup, timestamp=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    if dev.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(dev)
    doc = dict(meta=meta, results=results)
    if json_path is not None:
        from audiodiff.atomic import atomic_path

        with atomic_path(Path(json_path)) as tmp:
            tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return doc


def _child_main(arg: str) -> int:
    from audiodiff.errors import AudiodiffError as _Err

    try:
        result = measure(json.loads(arg), log=lambda m: print(m, file=sys.stderr, flush=True))
    except _Err as exc:
        print(f"error: {exc}", flush=True)
        return 2
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(_child_main(sys.argv[2]))
    sys.exit("usage: audiodiff bench (this module's --child mode is internal)")
