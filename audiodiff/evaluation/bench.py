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
from dataclasses import dataclass
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

    from audiodiff.inference import Generator, ModelOrigin, Vocoder, load_model
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
    return cls(network, recipe, device=cfg["device"], precision=precision, origin=ModelOrigin(str(cfg["recipe"])))


def measure(cfg: dict, log: Callable[[str], None] = lambda _m: None) -> dict:
    """One step count in this process: build, warm up, time `runs` runs. Returns a plain dict.

    cfg keys: checkpoint or recipe (+ overrides), steps, seconds, runs, warmup, threads
    (0: torch's default), device, seed, chunk (0: the library default), precision
    (fp32, bf16, fp16), sampler (None: the checkpoint's choice), and for a vocoder
    gain_adjust and refine (None: the checkpoint's defaults).
    """
    import torch

    from audiodiff.devices import set_cpu_threads

    set_cpu_threads(cfg.get("threads") or None)
    model = _build(cfg)
    if cfg.get("chunk"):
        model.chunk_samples = cfg["chunk"]
    task, plan, run = _workload(model, cfg)
    model_rss = _peak_rss_gib()
    times, wav = _timed_runs(run, model.device, cfg, log)
    audio_s = wav.shape[-1] / model.sample_rate
    med = statistics.median(times)
    result = dict(task=task, steps=cfg["steps"], threads=torch.get_num_threads(), device=str(model.device),
                  precision=model.precision, sampler=plan.sampler, plan=plan.describe(), runs=cfg["runs"],
                  warmup=cfg["warmup"], times_s=[round(t, 4) for t in times], median_s=round(med, 4),
                  audio_seconds=round(audio_s, 4), rtf=round(med / audio_s, 5),
                  peak_rss_gib=round(_peak_rss_gib(), 3), model_rss_gib=round(model_rss, 3),
                  chunk_samples=model.chunk_samples, output_samples=int(wav.shape[-1]),
                  output_finite=bool(torch.isfinite(wav).all()),
                  n_params=sum(p.numel() for p in model.network.parameters()))
    if task == "vocode":
        result.update(gain_adjust=plan.gain_adjust, refine=plan.refine)
    if model.device.type == "cuda":
        result["cuda_peak_gib"] = round(torch.cuda.max_memory_allocated(model.device) / 2 ** 30, 3)
    return result


def _workload(model, cfg: dict):
    """(task, plan, run): what one timed run does, `run(i)` -> waveform, seeded by i. A
    vocoder vocodes a random mel of `seconds` inside its preset's range; a generator
    samples one clip of `seconds`."""
    import torch

    from audiodiff.inference import Vocoder

    audio, steps = model.recipe.audio, cfg["steps"]
    if not isinstance(model, Vocoder):
        plan = model.plan(steps=steps, sampler=cfg.get("sampler"))
        return "sample", plan, lambda i: model.generate(cfg["seconds"], count=1, plan=plan, seed=i)[0]
    frames = -(-int(round(cfg["seconds"] * audio.sample_rate)) // audio.hop_length)
    g = torch.Generator().manual_seed(cfg["seed"] + 1)
    u = torch.rand(audio.n_mels, frames, generator=g)
    mel = u * 10 - 9 if audio.compression == "ln" else 0.2 + 0.6 * u  # inside the preset's range
    plan = model.plan(steps=steps, sampler=cfg.get("sampler"), gain_adjust=cfg.get("gain_adjust"),
                      refine=cfg.get("refine"))
    return "vocode", plan, lambda i: model.vocode(mel, plan, seed=i)


def _timed_runs(run: Callable, device, cfg: dict, log: Callable[[str], None]):
    """`warmup` untimed then `runs` timed calls of `run(i)`: (the timed seconds, the last output)."""
    import torch

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
        log(f"  [steps={cfg['steps']}] {'warmup' if i < cfg['warmup'] else 'run'} {i}: {dt:.2f} s")
        if i >= cfg["warmup"]:
            times.append(dt)
    return times, wav


@dataclass(frozen=True)
class BenchRequest:
    """What `audiodiff bench` is asked to measure. Exactly one of `checkpoint` (trained
    weights) and `recipe` (random weights: a file or a shipped recipe's name, with
    `overrides`) is given. A vocoder runs with `vocode`'s mel consistency: `gain_adjust`,
    `refine` (None: the checkpoint's default); `precision` (the network's autocast) and
    `sampler` (None: the checkpoint's choice per step count, else ddpm) as in `vocode` and
    `sample`; `threads` None or 0 is torch's default, `chunk` 0 the library's; `json_path`
    gets the whole result, written atomically."""
    checkpoint: str | Path | None = None
    recipe: str | Path | None = None
    overrides: Sequence[str] = ()
    steps: Sequence[int] = (1, 2, 4, 6)
    seconds: float = 10.0
    runs: int = 3
    warmup: int = 1
    threads: int | None = None
    device: str = "auto"
    seed: int = 0
    chunk: int = 0
    json_path: str | Path | None = None
    gain_adjust: bool | None = None
    refine: int | None = None
    precision: str = "fp32"
    sampler: str | None = None

    def check(self) -> None:
        """One-line errors for values no measurement can take, before anything runs."""
        from audiodiff.devices import check_threads
        from audiodiff.samplers import SAMPLERS

        if (self.checkpoint is None) == (self.recipe is None):
            raise AudiodiffError("give either -c CHECKPOINT (trained weights) or --recipe RECIPE (random weights)")
        if self.seconds <= 0:
            raise AudiodiffError("--seconds must be positive")
        if self.runs < 1 or self.warmup < 0:
            raise AudiodiffError("--runs must be >= 1 and --warmup >= 0")
        check_threads(self.threads)
        if not self.steps or min(self.steps) < 1:
            raise AudiodiffError("--steps: step counts must be integers >= 1")
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise AudiodiffError(f"--sampler {self.sampler!r}: choose one of {', '.join(SAMPLERS)}")

    def child_config(self, device) -> dict:
        """The settings each measuring subprocess gets (JSON; `measure`'s cfg less the step count)."""
        from audiodiff.recipe import resolve_recipe

        return dict(checkpoint=None if self.checkpoint is None else str(Path(self.checkpoint).resolve()),
                    recipe=None if self.recipe is None else str(resolve_recipe(self.recipe).resolve()),
                    overrides=list(self.overrides), seconds=float(self.seconds), runs=int(self.runs),
                    warmup=int(self.warmup), threads=int(self.threads or 0), device=str(device),
                    seed=int(self.seed), chunk=int(self.chunk), gain_adjust=self.gain_adjust,
                    refine=self.refine, precision=self.precision, sampler=self.sampler)


def run_bench(request: BenchRequest | None = None, log: Callable[[str], None] = lambda _m: None,
              **fields) -> dict:
    """Measure each step count of `request` (or of `BenchRequest(**fields)`) in a fresh
    subprocess; returns {"meta": ..., "results": [...]}. The first line logged names the
    model (`model_info.model_line`). User errors (missing files, bad values) raise
    AudiodiffError before anything runs."""
    from audiodiff.devices import resolve_device
    from audiodiff.precision import check_precision

    if request is None:
        request = BenchRequest(**fields)
    elif fields:
        raise TypeError(f"give a BenchRequest or its fields ({', '.join(sorted(fields))}), not both")
    request.check()
    dev = resolve_device(request.device)
    check_precision(request.precision, dev, "--precision")
    parsed = _load_model_recipe(request, dev, log)
    base = request.child_config(dev)
    results = [_measure_in_child(dict(base, steps=int(n)), request, log) for n in request.steps]
    doc = dict(meta=_meta(request, parsed, dev, base, results), results=results)
    if request.json_path is not None:
        from audiodiff.atomic import atomic_path

        with atomic_path(Path(request.json_path)) as tmp:
            tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return doc


def _load_model_recipe(request: BenchRequest, dev, log: Callable[[str], None]):
    """The model's recipe (its checkpoint read, or the recipe file), its options checked,
    and its "Model: ..." line logged."""
    from audiodiff.checkpoint import load_checkpoint
    from audiodiff.consistency import check_options
    from audiodiff.model_info import ModelView, model_line
    from audiodiff.recipe import load_recipe

    r = request
    if r.checkpoint is not None:
        data = load_checkpoint(r.checkpoint)
        parsed = data.recipe
        line = model_line(r.checkpoint, parsed, data.step, data.defaults,
                          view=ModelView(device=dev, precision=r.precision))
    else:
        parsed = load_recipe(r.recipe, list(r.overrides))
        line = model_line(r.recipe, parsed, 0,
                          view=ModelView(device=dev, precision=r.precision,
                                         name=f"recipe {r.recipe} with random weights"))
    check_options(r.gain_adjust, r.refine, parsed.model.conditional, str(r.checkpoint or r.recipe))
    log(line)
    return parsed


def _measure_in_child(cfg: dict, request: BenchRequest, log: Callable[[str], None]) -> dict:
    """`measure(cfg)` in a fresh Python process (its own peak memory); a one-line error if it fails."""
    n = cfg["steps"]
    log(f"steps={n}: {request.warmup} warm-up + {request.runs} timed run(s) in a fresh process")
    env = dict(os.environ)
    if request.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(request.threads)
    cmd = [sys.executable, "-m", "audiodiff.evaluation.bench", "--child", json.dumps(cfg)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, env=env)
    lines = [x for x in proc.stdout.splitlines() if x.startswith(RESULT_PREFIX)]
    if proc.returncode or not lines:
        tail = (proc.stdout.strip().splitlines() or ["no output"])[-1]
        raise AudiodiffError(f"benchmark of {n} steps failed (exit {proc.returncode}): {tail}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def _meta(request: BenchRequest, parsed, dev, base: dict, results: list[dict]) -> dict:
    """The run information beside the results: versions, machine, model, protocol."""
    import torch

    from audiodiff import __version__

    r = request
    meta = dict(package="audiodiff", version=__version__, torch_version=torch.__version__,
                python=platform.python_version(), cpu_model=cpu_model(), nproc=os.cpu_count(),
                device=str(dev), threads=results[0]["threads"], task=results[0]["task"], precision=r.precision,
                sampler=r.sampler,
                source="checkpoint" if r.checkpoint is not None else "recipe (random weights)",
                checkpoint=base["checkpoint"], recipe=base["recipe"], overrides=list(r.overrides),
                model=parsed.model.describe(),
                n_params=results[0]["n_params"], sample_rate=parsed.audio.sample_rate, seconds=float(r.seconds),
                runs=r.runs, warmup=r.warmup, timestamp=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    if dev.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(dev)
    return meta


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
