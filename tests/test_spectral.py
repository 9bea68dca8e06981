"""The MR-STFT distance shared by eval's metric and the training loss."""
from __future__ import annotations

import math

import pytest
import torch

from audiodiff.evaluation.metrics import mr_stft_distance
from audiodiff.spectral import mr_stft_loss


def noise(rows: int, length: int = 8000, seed: int = 0) -> torch.Tensor:
    return 0.3 * torch.randn(rows, length, generator=torch.Generator().manual_seed(seed))


def test_zero_for_identical_and_known_answer_for_a_gain():
    """A gain g: spectral convergence |1 - g|, log-magnitude L1 |ln g|, at every resolution."""
    x = noise(1)[0]
    assert float(mr_stft_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(mr_stft_loss(x, 0.5 * x)) == pytest.approx(0.5 + math.log(2), abs=2e-3)


def test_batched_rows_are_scored_one_by_one_as_eval_scores_them():
    a, b = noise(3, seed=1), noise(3, seed=2)
    rows = mr_stft_loss(a.view(3, 1, -1), b.view(3, 1, -1))
    assert rows.shape == (3, 1)
    for i in range(3):
        assert float(rows[i, 0]) == pytest.approx(mr_stft_distance(a[i], b[i]), rel=1e-5)
    assert len({round(float(r), 4) for r in rows[:, 0]}) == 3


def test_gradient_is_finite_even_through_silence():
    reference = torch.cat([noise(1, 4000)[0], torch.zeros(4000)])
    estimate = torch.zeros(8000, requires_grad=True)
    mr_stft_loss(reference, estimate).backward()
    assert bool(torch.isfinite(estimate.grad).all())
