"""The two network families side by side at equal CPU time, from scratch, on Kathleen.

The budget is wall-clock time on a quiet machine with 2 threads, turned into a step
count per arm by a speed probe: `probe` trains each arm from scratch for a few minutes,
one after the other, and records its steps per second. Training to that step count is
deterministic, so the arms may then train at any time, even beside other work, and
still get exactly the budget's worth of steps. (A CPU-seconds budget is not fair on a
shared machine: OpenMP threads spin while they wait for a descheduled peer, burning CPU
time without work.) Every arm's checkpoint at its step count then vocodes the 15
held-out report clips of the Kathleen split at 2, 4 and 6 steps, raw and with gain
adjustment, beside Griffin-Lim (librosa, 32 iterations) and the reference itself.

    python benchmarks/equal_time_study.py probe                  # ~3 min per arm, on a quiet machine
    python benchmarks/equal_time_study.py train diffwave-12x32   # the budget's steps (--hours 1)
    python benchmarks/equal_time_study.py train frames-192
    python benchmarks/equal_time_study.py eval                   # ~20 min
    python benchmarks/equal_time_study.py table                  # markdown, for docs/

Runs live in --runs (default ~/audiodiff-runs/study): speeds.json holds the probe,
<arm>/ the run folder, <arm>.pt its checkpoint at the budget's step, and
eval-<arm>-<raw|gain>/ the evals. `collect ARM --run DIR` takes that checkpoint from
another run folder of the same recipe (e.g. a longer run that passed the step).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KATHLEEN = REPO.parent / "shared" / "data" / "kathleen"
#: arm -> (recipe, extra --set overrides)
ARMS = {
    "diffwave-12x32": ("kathleen", []),
    "frames-192": ("kathleen-frames", []),
    "frames-256": ("kathleen-frames", ["model.channels=256"]),
}
STEPS = "2,4,6"
PROBE_SECONDS = 180
THREADS = 2
REPORT_FIRST = 5  # the split's first 5 validation clips are for schedule search, the rest for reports


def _train_command(arm: str, run: Path, *extra: str) -> list[str]:
    recipe, sets = ARMS[arm]
    command = [sys.executable, "-m", "audiodiff", "train", recipe, "--out-dir", str(run)]
    for item in (f"data.root={KATHLEEN}", *sets, *extra):
        command += ["--set", item]
    return command


def probe(runs: Path, seconds: int, arms: list[str]) -> None:
    """Train each arm from scratch for `seconds`, one after the other, with THREADS threads;
    keep its steps per second (the log records after the first, which holds start-up)."""
    speeds = {}
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    for arm in arms:
        with tempfile.TemporaryDirectory() as tmp:
            command = _train_command(arm, Path(tmp) / "run", "train.log_every=20", "train.validate_every=100000")
            subprocess.run(["timeout", "-s", "TERM", str(seconds), *command], cwd=REPO, env=env, check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            records = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
            rates = [r["steps_per_s"] for r in records if "steps_per_s" in r][1:]
        if not rates:
            sys.exit(f"{arm}: too few steps in {seconds} s to measure its speed")
        speeds[arm] = sum(rates) / len(rates)
        print(f"{arm}: {speeds[arm]:.3f} steps/s", flush=True)
        (runs / "speeds.json").write_text(json.dumps(speeds, indent=1))  # after each arm: a cut-short probe keeps what it measured


def budget_steps(arm: str, runs: Path, hours: float) -> int:
    """Steps `arm` makes in `hours` at its probed speed, rounded to a checkpoint (250 steps)."""
    path = runs / "speeds.json"
    if not path.is_file():
        sys.exit(f"{path}: run `probe` first")
    speed = json.loads(path.read_text())[arm]
    return max(250, int(round(hours * 3600 * speed / 250)) * 250)


def train(arm: str, runs: Path, hours: float) -> None:
    steps = budget_steps(arm, runs, hours)
    command = _train_command(arm, runs / arm, "train.keep_checkpoints=1000", f"train.max_steps={steps}")
    subprocess.run(command, cwd=REPO, check=True)
    collect(arm, runs, runs / arm, steps)


def collect(arm: str, runs: Path, run: Path, steps: int) -> None:
    """Keep the run's checkpoint at the budget's step as <arm>.pt."""
    ckpt = run / f"step-{steps:08d}.pt"
    if not ckpt.is_file():
        sys.exit(f"{ckpt}: not there (keep more checkpoints, or train further)")
    shutil.copy2(ckpt, runs / f"{arm}.pt")
    print(f"{arm}: {ckpt} -> {runs / f'{arm}.pt'}")


def report_clips(runs: Path) -> list[str]:
    for arm in ARMS:
        split = runs / arm / "split.json"
        if split.is_file():
            return json.loads(split.read_text())["validation"][REPORT_FIRST:]
    sys.exit(f"{runs}: no run folder with a split.json")


def evaluate(runs: Path) -> None:
    clips = report_clips(runs)
    for arm in ARMS:
        ckpt = runs / f"{arm}.pt"
        if not ckpt.is_file():
            continue
        for mode in ("raw", "gain"):
            flag = "--no-gain-adjust" if mode == "raw" else "--gain-adjust"
            subprocess.run([sys.executable, "-m", "audiodiff", "eval", "-c", str(ckpt), *clips, "--steps", STEPS,
                            flag, "--out-dir", str(runs / f"eval-{arm}-{mode}")], cwd=REPO, check=True)


BASELINES = ("reference", "griffin_lim", "band_griffin_lim")  # eval's system names for the rows beside the model
COLUMNS = (("pesq_wb", "PESQ-wb"), ("stoi", "STOI"), ("log_mel", "log-mel"), ("dnsmos_ovrl", "DNSMOS OVRL"))


def table(runs: Path) -> str:
    lines = ["| arm | steps | gain adj. | " + " | ".join(label for _, label in COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(COLUMNS)]
    baselines: dict[str, dict] = {}
    for arm in ARMS:
        for mode in ("raw", "gain"):
            path = runs / f"eval-{arm}-{mode}" / "results.json"
            if not path.is_file():
                continue
            for row in json.loads(path.read_text())["means"]:
                system = row.get("system", "")
                if system in BASELINES:
                    baselines[system] = row
                    continue
                cells = " | ".join(_fmt(row.get(key)) for key, _ in COLUMNS)
                lines.append(f"| {arm} | {row.get('steps', '')} | {'on' if mode == 'gain' else 'off'} | {cells} |")
    for name, row in baselines.items():
        cells = " | ".join(_fmt(row.get(key)) for key, _ in COLUMNS)
        lines.append(f"| {name} | | | {cells} |")
    return "\n".join(lines)


def _fmt(value) -> str:
    return "" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("probe", "train", "collect", "eval", "table"))
    parser.add_argument("arm", nargs="?", choices=tuple(ARMS))
    parser.add_argument("--runs", type=Path, default=Path.home() / "audiodiff-runs" / "study")
    parser.add_argument("--hours", type=float, default=1.0, help="the budget: hours on a quiet machine")
    parser.add_argument("--probe-seconds", type=int, default=PROBE_SECONDS)
    parser.add_argument("--run", type=Path, help="collect: the run folder to take the checkpoint from")
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    if args.what in ("train", "collect") and args.arm is None:
        parser.error(f"{args.what} needs an arm: {', '.join(ARMS)}")
    if args.what == "probe":
        probe(args.runs, args.probe_seconds, [args.arm] if args.arm else list(ARMS))
    elif args.what == "train":
        train(args.arm, args.runs, args.hours)
    elif args.what == "collect":
        collect(args.arm, args.runs, args.run or args.runs / args.arm, budget_steps(args.arm, args.runs, args.hours))
    elif args.what == "eval":
        evaluate(args.runs)
    else:
        print(table(args.runs))


if __name__ == "__main__":
    main()
