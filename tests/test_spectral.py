"""The MR-STFT distance shared by eval's metric and the training loss."""
from __future__ import annotations

import pytest
import torch

from audiodiff.evaluation.metrics import mr_stft_distance
from audiodiff.spectral import mr_stft_loss


def noise(rows: int, length: int = 8000, seed: int = 0) -> torch.Tensor:
    return 0.3 * torch.randn(rows, length, generator=torch.Generator().manual_seed(seed))


def test_zero_for_identical_signals():
    """(The gain known answer, |1 - g| + |ln g|, is tested through eval's metric in
    test_eval_metrics.py: the same function.)"""
    x = noise(1)[0]
    assert float(mr_stft_loss(x, x)) == pytest.approx(0.0, abs=1e-6)


def test_batched_rows_are_scored_one_by_one_as_eval_scores_them():
    a, b = noise(3, seed=1), noise(3, seed=2)
    rows = mr_stft_loss(a.view(3, 1, -1), b.view(3, 1, -1))
    assert rows.shape == (3, 1)
    for i in range(3):
        assert float(rows[i, 0]) == pytest.approx(mr_stft_distance(a[i], b[i]), rel=1e-5)
    assert len({round(float(r), 4) for r in rows[:, 0]}) == 3


def test_gradient_is_finite_where_the_reference_is_silent():
    """Noise where the reference is digital silence: the magnitude floor keeps the log
    finite, and the gradient there is finite and pushes the noise down."""
    reference = torch.cat([noise(1, 4000)[0], torch.zeros(4000)])
    estimate = (reference + 0.01 * noise(1, seed=5)[0]).requires_grad_(True)
    mr_stft_loss(reference, estimate).backward()
    grad = estimate.grad
    assert bool(torch.isfinite(grad).all())
    tail = slice(5000, 8000)  # well inside the silence, past the longest window's reach
    assert float(grad[tail].abs().sum()) > 0
    assert float((grad[tail] * estimate.detach()[tail]).sum()) > 0  # descent shrinks the noise
