"""Where computation runs: the torch device and the number of CPU threads.

Inference, training (and its torchrun processes) and the benchmark all read `--device`
and `--threads` the same way, so the parsing and its one-line errors live here, below
all of them.
"""
from __future__ import annotations

import re

import torch

from audiodiff.errors import AudiodiffError

#: What `--device` takes, as help shows it: `cuda:N` stands for a GPU's index.
DEVICE_CHOICES = ("cpu", "cuda", "cuda:N", "auto")


def is_device_name(name: str) -> bool:
    """Is `name` one of DEVICE_CHOICES (cuda:N with N a GPU's index)? Whether that device
    is there is `resolve_device`'s to say, when the model is placed."""
    return re.fullmatch(r"cpu|auto|cuda(:\d+)?", name) is not None


def check_threads(threads: int | None) -> None:
    """`--threads` is None (torch's default) or at least 1; else a one-line error."""
    if threads is not None and threads < 1:
        raise AudiodiffError(f"--threads {threads}: must be >= 1")


def set_cpu_threads(threads: int | None) -> None:
    """Limit torch's intra-op CPU threads to `threads` (None: torch's default, one per
    core), e.g. to leave cores to other work on a shared machine."""
    check_threads(threads)
    if threads is not None:
        torch.set_num_threads(threads)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'auto' (or None) -> cuda if available else cpu; otherwise the named device."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise AudiodiffError(f"--device {device!r}: not a device name (cpu, cuda, cuda:1, auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AudiodiffError(f"--device {device}: CUDA is not available on this machine")
    return dev
