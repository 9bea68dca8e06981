"""The two network families side by side at equal CPU time, from scratch, on Kathleen.

Each arm trains from scratch under the same CPU-seconds budget (benchmarks/cpu_budget.py:
fair even when other work shares the machine), one after the other, with torch's default
threads; then every arm's last checkpoint vocodes the 15 held-out report clips of the
Kathleen split at 2, 4 and 6 steps, raw and with gain adjustment, beside Griffin-Lim
(librosa, 32 iterations) and the reference itself.

    python benchmarks/equal_time_study.py train diffwave-12x32   # ~1 h each on 2 cores
    python benchmarks/equal_time_study.py train frames-192
    python benchmarks/equal_time_study.py eval                   # ~20 min
    python benchmarks/equal_time_study.py table                  # markdown, for docs/

Runs live in --runs (default ~/audiodiff-runs/study): <arm>/ is the run folder and
<arm>.pt the checkpoint the budget ended on; eval-<arm>-<raw|gain>/ hold the evals.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
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
CPU_SECONDS = 7200.0  # two cores for about an hour
REPORT_FIRST = 5  # the split's first 5 validation clips are for schedule search, the rest for reports


def _newest_checkpoint(run: Path) -> Path:
    found = sorted(run.glob("step-*.pt"))
    if not found:
        sys.exit(f"{run}: no checkpoint")
    return found[-1]


def train(arm: str, runs: Path, cpu_seconds: float) -> None:
    recipe, extra = ARMS[arm]
    run = runs / arm
    sets = [f"data.root={KATHLEEN}", *extra]
    command = [sys.executable, "-m", "audiodiff", "train", recipe, "--out", str(run)]
    for item in sets:
        command += ["--set", item]
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "cpu_budget.py"), str(cpu_seconds), "--", *command],
                   cwd=REPO, check=False)
    collect(arm, runs)


def collect(arm: str, runs: Path) -> None:
    """Keep the checkpoint the budget ended on as <arm>.pt (the run folder rotates its own)."""
    last = _newest_checkpoint(runs / arm)
    shutil.copy2(last, runs / f"{arm}.pt")
    print(f"{arm}: {last.name} -> {runs / f'{arm}.pt'}")


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
                            flag, "--out", str(runs / f"eval-{arm}-{mode}")], cwd=REPO, check=True)


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
                if system in ("reference", "griffin-lim"):
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
    parser.add_argument("what", choices=("train", "collect", "eval", "table"))
    parser.add_argument("arm", nargs="?", choices=tuple(ARMS))
    parser.add_argument("--runs", type=Path, default=Path.home() / "audiodiff-runs" / "study")
    parser.add_argument("--cpu-seconds", type=float, default=CPU_SECONDS)
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    if args.what in ("train", "collect") and args.arm is None:
        parser.error(f"{args.what} needs an arm: {', '.join(ARMS)}")
    if args.what == "train":
        train(args.arm, args.runs, args.cpu_seconds)
    elif args.what == "collect":
        collect(args.arm, args.runs)
    elif args.what == "eval":
        evaluate(args.runs)
    else:
        print(table(args.runs))


if __name__ == "__main__":
    main()
