"""Noise schedules, the training loss, and the samplers (with an oracle denoiser)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from audiodiff.diffusion import (LossSpec, Schedule, diffusion_loss, inference_schedule, make_betas,
                                 sample_noise_levels, training_schedule)
from audiodiff.recipe import LMNT_FAST_BETAS, DiffusionConfig
from audiodiff.samplers import SAMPLERS, ddim, ddpm
from audiodiff.spectral import mr_stft_loss

BASE = DiffusionConfig()  # DiffWave BASE: 50 linear betas 1e-4 .. 0.05


def test_base_training_schedule_values():
    s = training_schedule(BASE)
    betas = np.linspace(1e-4, 0.05, 50)
    assert len(s) == 50 and s.betas.dtype == torch.float64
    np.testing.assert_allclose(s.betas.numpy(), betas, rtol=1e-12)
    np.testing.assert_allclose(s.alpha_bars.numpy(), np.cumprod(1 - betas), rtol=1e-12)
    assert float(s.alpha_bars[-1]) == pytest.approx(np.prod(1 - betas), rel=1e-12)
    assert float(s.alpha_bars[-1]) == pytest.approx(0.27967, abs=1e-5)  # a known number, as a sanity anchor
    np.testing.assert_allclose(s.noise_levels.numpy(), np.sqrt(np.cumprod(1 - betas)), rtol=1e-12)
    assert (s.noise_levels.diff() < 0).all()


def test_other_schedule_families():
    q = make_betas("quadratic", 10, 1e-4, 0.05)
    assert float(q[0]) == pytest.approx(1e-4) and float(q[-1]) == pytest.approx(0.05)
    np.testing.assert_allclose(q.sqrt().diff().numpy(), np.full(9, (0.05 ** 0.5 - 1e-2) / 9), rtol=1e-9)
    c = make_betas("cosine", 50, 1e-4, 0.05)
    assert len(c) == 50 and float(c.min()) >= 1e-4 and float(c.max()) <= 0.05
    assert (c.diff() >= 0).all()
    with pytest.raises(ValueError, match="unknown schedule"):
        make_betas("sigmoid", 10, 1e-4, 0.05)


def test_schedule_rejects_bad_betas():
    for bad in ([], [0.0, 0.1], [0.1, 1.0], [0.2, -0.1]):
        with pytest.raises(ValueError):
            Schedule.from_betas(bad) if bad != [] else Schedule(torch.zeros(0, dtype=torch.float64))


def test_inference_schedule_six_steps_is_lmnt():
    s = inference_schedule(BASE, 6)
    assert s.betas.tolist() == list(LMNT_FAST_BETAS)
    expected_ab = np.cumprod(1 - np.array(LMNT_FAST_BETAS))
    np.testing.assert_allclose(s.alpha_bars.numpy(), expected_ab, rtol=1e-12)


@pytest.mark.parametrize("steps", [50, 51, 200])
def test_inference_schedule_full_is_training(steps):
    assert torch.equal(inference_schedule(BASE, steps).betas, training_schedule(BASE).betas)


@pytest.mark.parametrize("steps", [1, 2, 3, 5, 7, 10, 25, 49])
def test_inference_schedules_decrease_strictly(steps):
    s = inference_schedule(BASE, steps)
    assert len(s) == steps
    levels = s.noise_levels
    assert (levels > 0).all() and (levels < 1).all()
    assert (levels.diff() < 0).all()


def test_inference_schedule_short_and_subsampled_values():
    two = inference_schedule(BASE, 2)
    np.testing.assert_allclose(two.betas.numpy(), [1e-4, 0.5], rtol=1e-9)
    assert inference_schedule(BASE, 1).betas.tolist() == [0.5]
    ten = inference_schedule(BASE, 10)
    idx = np.round(np.linspace(0, 49, 10)).astype(int)
    np.testing.assert_allclose(ten.noise_levels.numpy(), training_schedule(BASE).noise_levels.numpy()[idx],
                               rtol=1e-10)
    with pytest.raises(ValueError):
        inference_schedule(BASE, 0)


def test_from_noise_levels_round_trip():
    for s in (training_schedule(BASE), inference_schedule(BASE, 6), inference_schedule(BASE, 10)):
        back = Schedule.from_noise_levels(s.noise_levels)
        np.testing.assert_allclose(back.betas.numpy(), s.betas.numpy(), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError):
        Schedule.from_noise_levels([0.9, 0.95])  # increasing: a negative beta


def test_sample_noise_levels_range_and_determinism():
    s = training_schedule(BASE)
    levels = sample_noise_levels(s, 20000, torch.Generator().manual_seed(0))
    assert levels.shape == (20000,) and levels.dtype == torch.float32
    last = float(s.noise_levels[-1])
    assert float(levels.min()) >= last - 1e-6 and float(levels.max()) <= 1.0
    assert float(levels.min()) < last + 0.01 and float(levels.max()) > 0.999  # the whole range is used
    # each of the 50 intervals gets its share: about 20000 / 50 draws per interval
    edges = torch.cat([torch.ones(1, dtype=torch.float64), s.noise_levels]).flip(0).numpy()
    counts, _ = np.histogram(levels.double().numpy(), bins=edges)
    assert counts.min() > 300 and counts.max() < 500
    again = sample_noise_levels(s, 20000, torch.Generator().manual_seed(0))
    assert torch.equal(levels, again)
    other = sample_noise_levels(s, 20000, torch.Generator().manual_seed(1))
    assert not torch.equal(levels, other)


def oracle_network(x0: torch.Tensor):
    """A 'network' that knows the clean signal: eps = (x - level * x0) / sqrt(1 - level^2)."""
    def net(x, level, cond=None):
        a = level.double().view(-1, 1, 1)
        return ((x.double() - a * x0.double()) / (1 - a ** 2).sqrt()).to(x.dtype)
    return net


def clean_signal(batch: int = 2, length: int = 2000) -> torch.Tensor:
    t = torch.arange(length, dtype=torch.float32) / 22050
    x0 = torch.stack([0.5 * torch.sin(2 * math.pi * (200 + 100 * b) * t) for b in range(batch)])
    return x0.unsqueeze(1)


def test_diffusion_loss_is_zero_for_the_oracle_and_mean_abs_eps_for_zero():
    x0 = clean_signal()
    s = training_schedule(BASE)
    loss = diffusion_loss(oracle_network(x0), x0, None, LossSpec(s), torch.Generator().manual_seed(0))
    assert float(loss) < 1e-3
    zero = diffusion_loss(lambda x, level, cond: torch.zeros_like(x), x0, None, LossSpec(s),
                          torch.Generator().manual_seed(0))
    assert float(zero) == pytest.approx(math.sqrt(2 / math.pi), rel=0.03)  # E|N(0,1)|


def test_stft_term_scores_the_estimate_of_the_clean_signal():
    """With a network that predicts zero noise, the clean estimate is noisy / level: the
    loss is the noise L1 plus weight x MR-STFT(x0, noisy / level), recomputed here from
    the same draws; the oracle's estimate is exact, so its STFT term is ~0."""
    x0 = clean_signal(length=4096)
    s = training_schedule(BASE)
    zero = lambda x, level, cond: torch.zeros_like(x)  # noqa: E731
    plain = diffusion_loss(zero, x0, None, LossSpec(s), torch.Generator().manual_seed(3))
    mixed = diffusion_loss(zero, x0, None, LossSpec(s, stft_weight=0.5), torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    level = sample_noise_levels(s, 2, g).view(-1, 1, 1)
    eps = torch.randn(x0.shape, generator=g)
    noisy = level * x0 + (1 - level ** 2).sqrt() * eps
    expected = mr_stft_loss(x0.squeeze(1), (noisy / level).squeeze(1)).mean()
    assert float(expected) > 0.5  # the noise is loud in the estimate: a term that matters
    assert float(mixed - plain) == pytest.approx(0.5 * float(expected), rel=1e-4)
    oracle = diffusion_loss(oracle_network(x0), x0, None, LossSpec(s, stft_weight=0.5),
                            torch.Generator().manual_seed(3))
    assert float(oracle) < 1e-2


def test_stft_term_gradient_reaches_the_network():
    x0 = clean_signal(length=4096)
    scale = torch.tensor(0.5, requires_grad=True)
    net = lambda x, level, cond: scale * x  # noqa: E731
    s = training_schedule(BASE)
    plain = diffusion_loss(net, x0, None, LossSpec(s), torch.Generator().manual_seed(0))
    (g_plain,) = torch.autograd.grad(plain, scale)
    mixed = diffusion_loss(net, x0, None, LossSpec(s, stft_weight=1.0), torch.Generator().manual_seed(0))
    (g_mixed,) = torch.autograd.grad(mixed, scale)
    assert math.isfinite(float(g_mixed)) and float(g_mixed) != pytest.approx(float(g_plain), rel=1e-3)


def test_diffusion_loss_is_seeded():
    x0 = clean_signal()
    s = LossSpec(training_schedule(BASE))
    net = lambda x, level, cond: 0.5 * x  # noqa: E731
    a = diffusion_loss(net, x0, None, s, torch.Generator().manual_seed(7))
    b = diffusion_loss(net, x0, None, s, torch.Generator().manual_seed(7))
    c = diffusion_loss(net, x0, None, s, torch.Generator().manual_seed(8))
    assert float(a) == float(b) and float(a) != float(c)


def test_data_scale_noises_the_scaled_audio():
    """data_scale 4 on x0 is the plain loss on 4 * x0 (same draws): the network sees and
    is scored on the scaled signal, and the oracle of the scaled signal is exact."""
    x0 = 0.1 * clean_signal(length=4096)
    s = training_schedule(BASE)
    net = lambda x, level, cond: 0.3 * x  # noqa: E731
    for target in ("eps", "x0"):
        scaled = diffusion_loss(net, x0, None, LossSpec(s, target, 0.5, data_scale=4.0), torch.Generator().manual_seed(2))
        plain = diffusion_loss(net, 4 * x0, None, LossSpec(s, target, 0.5), torch.Generator().manual_seed(2))
        unscaled = diffusion_loss(net, x0, None, LossSpec(s, target, 0.5), torch.Generator().manual_seed(2))
        assert float(scaled) == pytest.approx(float(plain), rel=1e-6) and float(scaled) != pytest.approx(float(unscaled))
    exact = diffusion_loss(oracle_network(4 * x0), x0, None, LossSpec(s, data_scale=4.0), torch.Generator().manual_seed(2))
    assert float(exact) < 1e-3


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
@pytest.mark.parametrize("steps", [6, 10, 50])
def test_samplers_recover_x0_with_an_oracle(sampler, steps):
    x0 = clean_signal()
    net = oracle_network(x0)
    schedule = inference_schedule(BASE, steps)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x0.shape, generator=g)
    calls = []
    out = SAMPLERS[sampler](lambda x, level: net(x, level), schedule, noise, g, on_step=calls.append)
    assert out.shape == x0.shape
    assert (out - x0).abs().max() < 1e-3
    assert calls == list(range(1, steps + 1))


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_samplers_clip_at_the_trained_range(sampler):
    """A signal scaled to peak 2 (data_scale 4 on audio at peak 0.5) comes back whole with
    clip = 4; clip = 1 (the default, unit-range audio) cuts it at 1."""
    x0 = 4 * clean_signal()  # peak 2
    net = oracle_network(x0)
    schedule = inference_schedule(BASE, 10)
    outs = {}
    for clip in (1.0, 4.0):
        g = torch.Generator().manual_seed(0)
        noise = torch.randn(x0.shape, generator=g)
        outs[clip] = SAMPLERS[sampler](lambda x, level: net(x, level), schedule, noise, g, clip=clip)
    assert (outs[4.0] - x0).abs().max() < 1e-3
    assert float(outs[1.0].abs().max()) <= 1.0 and float((outs[1.0] - x0).abs().max()) > 0.5


def test_ddpm_uses_the_right_levels_in_order():
    seen = []

    def denoise(x, level):
        seen.append(float(level[0]))
        assert level.shape == (x.shape[0],)
        return torch.zeros_like(x)

    schedule = inference_schedule(BASE, 6)
    ddpm(denoise, schedule, torch.zeros(3, 1, 10), torch.Generator().manual_seed(0))
    np.testing.assert_allclose(seen, schedule.noise_levels.flip(0).numpy(), rtol=1e-6)


def stochastic_denoiser(x, level):
    return 0.3 * x + 0.05 * level.view(-1, 1, 1)


@pytest.mark.parametrize("sampler, kwargs", [(ddpm, {}), (ddim, {"eta": 1.0})])
def test_seed_fixes_the_result(sampler, kwargs):
    schedule = inference_schedule(BASE, 6)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(2, 1, 1000, generator=g)
        return sampler(stochastic_denoiser, schedule, noise, g, **kwargs)

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 0.01
    assert a.abs().max() <= 1.0


def test_ddim_eta_zero_is_deterministic_given_noise():
    schedule = inference_schedule(BASE, 6)
    noise = torch.randn(1, 1, 500, generator=torch.Generator().manual_seed(0))
    a = ddim(stochastic_denoiser, schedule, noise, torch.Generator().manual_seed(1))
    b = ddim(stochastic_denoiser, schedule, noise, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)  # eta = 0 draws no fresh noise
