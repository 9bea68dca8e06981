"""Will an unconditional sample fit in memory? Checked before any work.

The network runs over the signal in chunks (inference.chunked_denoiser), but a
sampler updates the whole signal at every step, so the noise, the sampler's working
copies and the output are each one float32 tensor of the whole length: up to
`WHOLE_SIGNAL_COPIES` x 4 bytes per sample per clip at the peak (x, the network's
output, the update's temporaries, the injected noise, the clean estimate).
`check_sample_memory` refuses, in one line naming the option and the limit, a length
whose working set is larger than the memory available now (MemAvailable in
/proc/meminfo, else the free physical pages; on CUDA also the device's free memory),
instead of letting the allocation swap the machine to a halt or die with an
out-of-memory traceback. Sampling in bounded memory at any length would need a
sampler that streams the signal through the steps; until then, long sounds are
sampled as several clips.
"""
from __future__ import annotations

import math
import os

import torch

from audiodiff.atomic import format_bytes
from audiodiff.errors import AudiodiffError, MemoryBudgetError

#: Peak memory of sampling, in whole-signal float32 copies: the growth of the RSS over the
#: signal's size, 4 clips of 60 s on CPU, was 7.5 (2 steps) to 11.8 (16 steps) for DDPM and 8.5
#: to 15.3 for DDIM (which also keeps the clean estimate); the allocator's reuse of freed
#: buffers (inference.keep_freed_memory) makes it grow with the steps before it levels off.
WHOLE_SIGNAL_COPIES = 16
#: Memory kept free beside the signal: the network's chunk buffers, the allocator's slack.
HEADROOM = 256 * 2 ** 20
#: Those on the host when the network runs on a GPU: the noise drawn on the CPU, each step's
#: injected noise before it moves, the output, the copy written to disk.
HOST_COPIES_WITH_GPU = 4


def available_memory() -> int | None:
    """Bytes of host memory available to a new allocation now, or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def device_free_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA device (None for the CPU or where it cannot be asked)."""
    if device.type != "cuda":
        return None
    try:
        return int(torch.cuda.mem_get_info(device)[0])
    except (RuntimeError, AssertionError):
        return None


def sample_length(seconds: float, sample_rate: int) -> int:
    """Samples in `seconds` (AudiodiffError unless a finite positive number)."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise AudiodiffError(f"--seconds {seconds:.10g}: must be a positive number")
    return max(1, int(round(seconds * sample_rate)))


def check_sample_memory(seconds: float, count: int, sample_rate: int,
                        device: str | torch.device = "cpu") -> None:
    """Raise MemoryBudgetError, naming --seconds (and -n) and the longest clip that fits,
    if sampling `count` clips of `seconds` at `sample_rate` cannot fit in the memory
    available now; do nothing where the available memory cannot be known."""
    if count <= 0:
        raise AudiodiffError(f"-n {count}: must be positive")
    length = sample_length(seconds, sample_rate)
    device = torch.device(device)
    on_gpu = device.type == "cuda"
    budgets = [("memory", available_memory(), HOST_COPIES_WITH_GPU if on_gpu else WHOLE_SIGNAL_COPIES)]
    if on_gpu:
        budgets.append((f"{device} memory", device_free_memory(device), WHOLE_SIGNAL_COPIES))
    for what, free, copies in budgets:
        if free is None:
            continue
        per_second = 4 * copies * count * sample_rate  # bytes
        need = 4 * copies * count * length + HEADROOM
        if need > free:
            clips = f" x -n {count} clips" if count > 1 else ""
            fits = max(0, math.floor((free - HEADROOM) / per_second))
            raise MemoryBudgetError(
                f"--seconds {seconds:.10g}{clips}: sampling holds the whole signal in memory, about "
                f"{format_bytes(need)} at {sample_rate} Hz, more than the {format_bytes(free)} of {what} "
                f"available; at most {fits:.0f} s{' per clip' if count > 1 else ''} fits here: sample shorter "
                f"clips{' or fewer at once' if count > 1 else ''}")
