"""The DiffWave network: conditioner upsampling, shapes, init, receptive field."""
from __future__ import annotations

import math

import pytest
import torch

from audiodiff.networks.diffwave import DiffWave, MelUpsampler, NoiseLevelEmbedding, upsample_strides
from audiodiff.recipe import ModelConfig, load_recipe

from conftest import TINY

TINY_MODEL = ModelConfig(residual_layers=6, residual_channels=16, kernel_size=3, dilation_cycle=3)


def randomize_output(net: DiffWave, seed: int = 0) -> DiffWave:
    """Give the zero-initialised output projection random weights so outputs are non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.output_projection.weight.copy_(torch.randn(net.output_projection.weight.shape, generator=g) * 0.3)
        net.output_projection.bias.fill_(0.01)
    return net


@pytest.mark.parametrize("hop, expected", [(256, [16, 16]), (1, [1]), (16, [16]), (240, [16, 15]),
                                           (275, [11, 5, 5])])
def test_upsample_strides_known_values(hop, expected):
    assert upsample_strides(hop) == expected


@pytest.mark.parametrize("hop", [64, 120, 128, 200, 256, 275, 300, 320, 441, 480, 512, 600])
def test_upsample_strides_product_and_bounds(hop):
    strides = upsample_strides(hop)
    assert math.prod(strides) == hop
    assert all(1 < s <= 16 for s in strides)
    assert strides == sorted(strides, reverse=True)


@pytest.mark.parametrize("hop", [17, 34, 19 * 16, 256 * 23])
def test_upsample_strides_rejects_large_primes(hop):
    with pytest.raises(ValueError, match="prime factor"):
        upsample_strides(hop)


@pytest.mark.parametrize("hop", [256, 300, 200, 275, 120])
@pytest.mark.parametrize("frames", [1, 7])
def test_mel_upsampler_length_is_frames_times_hop(hop, frames):
    up = MelUpsampler(hop)
    mel = torch.randn(2, 80, frames, generator=torch.Generator().manual_seed(hop))
    out = up(mel)
    assert out.shape == (2, 80, frames * hop)
    assert torch.isfinite(out).all()


def test_mel_upsampler_is_local_in_time():
    """Changing frame k only changes samples near [k*hop, (k+1)*hop)."""
    hop, frames, k = 256, 12, 6
    up = MelUpsampler(hop)
    mel = torch.randn(1, 80, frames, generator=torch.Generator().manual_seed(0))
    bumped = mel.clone()
    bumped[..., k] += 1.0
    with torch.no_grad():
        diff = (up(bumped) - up(mel)).abs().amax(dim=(0, 1))
    changed = torch.nonzero(diff > 0).flatten()
    assert changed.numel() > 0
    assert changed.min() >= (k - 1) * hop and changed.max() < (k + 2) * hop


@pytest.mark.parametrize("conditional", [True, False])
def test_diffwave_output_shape_and_zero_init(conditional):
    torch.manual_seed(0)
    cfg = ModelConfig(residual_layers=4, residual_channels=8, dilation_cycle=2, conditional=conditional)
    net = DiffWave(cfg, n_mels=80, hop_length=256)
    audio = torch.randn(3, 1, 1024)
    level = torch.tensor([0.1, 0.5, 0.99])
    cond = net.condition(torch.randn(3, 80, 4)) if conditional else None
    out = net(audio, level, cond)
    assert out.shape == (3, 1, 1024)
    assert torch.equal(out, torch.zeros_like(out))  # zero-initialised output projection
    randomize_output(net)
    out = net(audio, level, cond)
    assert out.shape == (3, 1, 1024) and out.abs().max() > 1e-3


def test_conditioning_rules():
    cond_net = DiffWave(TINY_MODEL, 80, 256)
    assert cond_net.conditional
    with pytest.raises(ValueError, match="needs `cond`"):
        cond_net(torch.zeros(1, 1, 256), torch.ones(1))
    uncond = DiffWave(ModelConfig(residual_layers=2, residual_channels=4, dilation_cycle=2, conditional=False), 80, 256)
    assert not uncond.conditional and uncond.upsampler is None
    assert all(layer.conditioner_projection is None for layer in uncond.layers)
    with pytest.raises(ValueError, match="unconditional"):
        uncond.condition(torch.zeros(1, 80, 2))
    assert uncond(torch.zeros(1, 1, 300), torch.ones(1), None).shape == (1, 1, 300)


def test_from_recipe_builds_the_recipe_model():
    recipe = load_recipe(TINY)
    net = DiffWave.from_recipe(recipe)
    assert len(net.layers) == 6
    assert net.input_projection.out_channels == 16
    assert [layer.dilated_conv.dilation[0] for layer in net.layers] == [1, 2, 4, 1, 2, 4]
    assert [s.stride[1] for s in net.upsampler.stages] == [16, 16]
    assert net.layers[0].conditioner_projection.in_channels == 80


def test_receptive_margin_values():
    assert DiffWave(ModelConfig(), 80, 256).receptive_margin() == 3069  # DiffWave BASE
    assert DiffWave(TINY_MODEL, 80, 256).receptive_margin() == 14
    five = ModelConfig(residual_layers=4, residual_channels=4, kernel_size=5, dilation_cycle=2)
    assert DiffWave(five, 80, 256).receptive_margin() == 2 * (1 + 2) * 2


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_receptive_margin_is_exact(kernel_size):
    """Perturbing input sample p changes outputs exactly within p +- receptive_margin()."""
    torch.manual_seed(1)
    cfg = ModelConfig(residual_layers=6, residual_channels=16, kernel_size=kernel_size, dilation_cycle=3)
    net = randomize_output(DiffWave(cfg, 80, 256).double())
    margin = net.receptive_margin()
    T, p = 512, 250
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 1, T, generator=g, dtype=torch.float64)
    cond = torch.randn(1, 80, T, generator=g, dtype=torch.float64)
    level = torch.tensor([0.7], dtype=torch.float64)
    bumped = x.clone()
    bumped[..., p] += 1.0
    with torch.no_grad():
        diff = (net(bumped, level, cond) - net(x, level, cond)).abs()[0, 0]
    outside = torch.cat([diff[:p - margin], diff[p + margin + 1:]])
    assert outside.max() == 0
    inside = diff[p - margin:p + margin + 1]
    assert inside[margin] > 1e-6            # the sample itself
    assert inside[0] > 0 and inside[-1] > 0  # the margin is tight: its edges are reached


def test_batch_items_are_independent():
    torch.manual_seed(3)
    net = randomize_output(DiffWave(TINY_MODEL, 80, 256))
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 1, 512, generator=g)
    mel = torch.randn(2, 80, 2, generator=g) - 4
    level = torch.tensor([0.3, 0.9])
    with torch.no_grad():
        both = net(x, level, net.condition(mel))
        first = net(x[:1], level[:1], net.condition(mel[:1]))
    torch.testing.assert_close(both[:1], first, atol=1e-5, rtol=0)
    assert not torch.allclose(both[0], both[1])


def test_noise_level_embedding():
    emb = NoiseLevelEmbedding()
    out = emb(torch.tensor([0.5, 0.5, 0.5001, 0.9]))
    assert out.shape == (4, 512)
    torch.testing.assert_close(out[0], out[1])
    assert (out[0] - out[2]).abs().max() > 1e-4  # close levels are still told apart (scale 5000)
    assert (out[0] - out[3]).abs().max() > 1e-3


def test_noise_level_changes_the_prediction():
    torch.manual_seed(5)
    net = randomize_output(DiffWave(TINY_MODEL, 80, 256))
    x = torch.randn(1, 1, 256)
    cond = net.condition(torch.randn(1, 80, 1) - 4)
    with torch.no_grad():
        a = net(x, torch.tensor([0.2]), cond)
        b = net(x, torch.tensor([0.95]), cond)
    assert (a - b).abs().max() > 1e-4
