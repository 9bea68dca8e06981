"""Data-parallel training across processes started by torchrun (one process per device).

`torchrun --nproc-per-node N -m audiodiff train RECIPE` starts N processes and sets
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in each; `init_distributed`
reads them, picks the process's device (cuda:LOCAL_RANK, or the CPU) and joins the
process group (NCCL on GPUs, gloo on CPU). Without those variables it returns a
one-process context and nothing here communicates, so the same training code runs
either way. Rank 0 is the main process: it alone writes files and prints.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from audiodiff.devices import resolve_device
from audiodiff.errors import AudiodiffError

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a data-parallel run (one process: rank 0 of 1)."""
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor (any shape, on `device`) over all processes."""
        if not self.distributed:
            return value
        value = value.clone()
        dist.all_reduce(value)
        return value / self.world_size

    def same_everywhere(self, value: int) -> bool:
        """True when every process passed the same `value` (the same answer on every rank)."""
        if not self.distributed:
            return True
        both = torch.tensor([value, -value], dtype=torch.float64, device=self.device)
        dist.all_reduce(both, op=dist.ReduceOp.MAX)
        return float(both[0]) == -float(both[1])

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run `fn` on rank 0 only and return its result on every rank.

        If it raises an AudiodiffError, every rank raises it (with its one line), so no
        process is left waiting for the others. The result must be picklable.
        """
        if not self.distributed:
            return fn()
        box: list = [None]
        if self.is_main:
            try:
                box[0] = (True, fn())
            except AudiodiffError as exc:
                box[0] = (False, str(exc))
        dist.broadcast_object_list(box, src=0)
        ok, value = box[0]
        if not ok:
            raise AudiodiffError(value)
        return value


def launched_by_torchrun() -> bool:
    """True in a process started by torchrun with more than one process in all."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """True unless this is a torchrun process of rank above 0."""
    return int(os.environ.get("RANK", "0")) == 0


def init_distributed(device: str | torch.device = "auto") -> DistContext:
    """The context of this process; joins the process group when started by torchrun.

    Under torchrun, 'auto' and 'cuda' mean cuda:LOCAL_RANK when CUDA is available
    (choose GPUs with CUDA_VISIBLE_DEVICES), 'cpu' trains on the CPU with gloo.
    """
    if not launched_by_torchrun():
        return DistContext(resolve_device(device))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    dev = resolve_device(device)
    if dev.type == "cuda":
        if dev.index is not None:
            raise AudiodiffError(f"--device {device}: under torchrun each process uses cuda:LOCAL_RANK; "
                                 f"pass --device cuda (pick GPUs with CUDA_VISIBLE_DEVICES)")
        if local >= torch.cuda.device_count():
            raise AudiodiffError(f"torchrun local rank {local} has no GPU: {torch.cuda.device_count()} visible; "
                                 f"start at most that many processes per node")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistContext(dev, rank=rank, world_size=world, local_rank=local)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (after init_distributed joined one)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
