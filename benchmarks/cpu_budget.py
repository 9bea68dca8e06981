"""Run a command until its process tree has used a given number of CPU-seconds, then
stop it with SIGTERM (audiodiff train saves a checkpoint and exits cleanly on it).

A CPU-time budget, unlike a wall-clock one, stays fair when other work shares the
machine: two trainings given the same budget got the same CPU time whatever ran
beside them.

    python benchmarks/cpu_budget.py 7200 -- audiodiff train kathleen --out RUN

Prints the CPU-seconds and wall seconds used when the command ends. Linux only (/proc).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _cpu_seconds(pid: int, reaped: bool) -> float:
    """utime + stime of `pid` (plus its reaped children's when `reaped`), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)
    return ticks / TICKS


def tree_cpu_seconds(root: int) -> float:
    """CPU-seconds used so far by `root`, its live descendants and the children it reaped."""
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += _cpu_seconds(pid, reaped=True)
        stack += _children(pid)
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cpu_seconds", type=float, help="CPU-seconds the command may use (all cores together)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    start = time.monotonic()
    proc = subprocess.Popen(command)
    used = 0.0
    while proc.poll() is None:
        used = max(used, tree_cpu_seconds(proc.pid))
        if used >= args.cpu_seconds:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
            break
        time.sleep(2.0)
    print(f"cpu_budget: {used:.0f} CPU-s used of {args.cpu_seconds:.0f}, {time.monotonic() - start:.0f} s wall, "
          f"exit {proc.returncode}", file=sys.stderr)
    return proc.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
