"""Numeric precision of training and sampling: fp32, or autocast to bf16 or fp16.

Weights, optimiser state and the EMA stay in float32 whatever the precision; only the
network's matrix products and convolutions run in the lower precision inside
`autocast` (torch.autocast). fp16 needs CUDA and a gradient scaler (`grad_scaler`)
against underflowing gradients; bf16 has float32's range and needs none, and runs on
CUDA (Ampere or newer) and on CPU (fast only where the CPU has bf16 instructions).
"""
from __future__ import annotations

import contextlib

import torch

from audiodiff.errors import AudiodiffError
from audiodiff.recipe import PRECISIONS

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device, what: str = "precision") -> None:
    """Raise AudiodiffError (one line naming `what`) unless `precision` runs on `device`."""
    if precision not in PRECISIONS:
        raise AudiodiffError(f"{what} {precision!r}: must be one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise AudiodiffError(f"{what} fp16 needs a CUDA device (this runs on {device}); use bf16 or fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise AudiodiffError(f"{what} bf16 is not supported by {torch.cuda.get_device_name(device)}; "
                             f"use fp16 or fp32")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """A context in which the network runs at `precision` on `device` (fp32: does nothing)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for fp16 only (elsewhere its methods pass through)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
