"""PriorGrad's energy prior: per-frame noise std from the mel, in training and sampling."""
from __future__ import annotations

import pytest
import torch

from audiodiff.audio import MelSpectrogram
from audiodiff.diffusion import LossSpec, Schedule, diffusion_loss, training_schedule
from audiodiff.errors import RecipeError
from audiodiff.inference import Vocoder
from audiodiff.networks.diffwave import DiffWave
from audiodiff.prior import frame_energy, noise_std, reference_energy
from audiodiff.recipe import load_recipe

from conftest import TINY, read_metrics, sine, tiny_overrides, train_run

ENERGY = ["diffusion.prior='energy'", "diffusion.prior_reference=0.1", "diffusion.prior_min=0.1"]


def quiet_then_loud() -> torch.Tensor:
    """1 s of audio: 0.5 s of a sine at amplitude 0.001, then 0.5 s at 0.5."""
    wav = torch.from_numpy(sine(1.0, 330.0, amp=1.0)).float()
    half = wav.shape[-1] // 2
    return torch.cat([wav[:half] * 0.001, wav[half:] * 0.5])


def test_noise_std_follows_the_mel_energy():
    recipe = load_recipe(TINY, ENERGY)
    mel = MelSpectrogram(recipe.audio)(quiet_then_loud()).unsqueeze(0)  # [1, 80, frames]
    length = mel.shape[-1] * 256
    std = noise_std(mel, recipe.audio, recipe.diffusion, length)
    assert std.shape == (1, 1, length)
    quiet, loud = std[..., : length // 2 - 2048], std[..., length // 2 + 2048:]
    assert torch.allclose(quiet, torch.tensor(0.1)) and torch.allclose(loud, torch.tensor(1.0))
    # one value per frame: constant across each hop
    assert torch.equal(std[..., :256], std[..., :1].expand(1, 1, 256))
    assert noise_std(mel, load_recipe(TINY).audio, load_recipe(TINY).diffusion, length) is None


def test_reference_energy_is_the_percentile():
    recipe = load_recipe(TINY)
    mel = MelSpectrogram(recipe.audio)(quiet_then_loud())
    energies = frame_energy(mel, recipe.audio)
    assert reference_energy([mel], recipe.audio, 100.0) == pytest.approx(float(energies.max()))
    assert reference_energy([mel], recipe.audio, 0.0) == pytest.approx(float(energies.min()))


def test_loss_weighs_scaled_noise_back_to_unit():
    """With a network that predicts zero, |eps * std| / std = |eps|: the same loss."""
    spec = LossSpec(training_schedule(load_recipe(TINY).diffusion))
    zero = lambda noisy, level, cond: torch.zeros_like(noisy)  # noqa: E731
    audio = torch.zeros(2, 1, 512)
    std = torch.rand(2, 1, 512, generator=torch.Generator().manual_seed(1)) + 0.1
    plain = diffusion_loss(zero, audio, None, spec, torch.Generator().manual_seed(0))
    scaled = diffusion_loss(zero, audio, None, spec, torch.Generator().manual_seed(0), std=std)
    assert float(scaled) == pytest.approx(float(plain), rel=1e-6)
    assert 0.7 < float(plain) < 0.9  # E|z| = 0.798


def test_sampling_starts_from_the_prior():
    """An untrained network predicts zero noise (zero-initialised output), so one DDPM
    step of the raw sampler (no mel consistency) returns the prior's noise / sqrt(1 - beta):
    std 0.1 where the mel is quiet, unit (then clamped to [-1, 1]) where it is loud."""
    recipe = load_recipe(TINY, ENERGY)
    torch.manual_seed(0)
    vocoder = Vocoder(DiffWave.from_recipe(recipe), recipe)
    mel = vocoder.mel(quiet_then_loud())
    one_step = Schedule.from_betas([0.01])
    out = vocoder.vocode(mel, schedule=one_step, sampler="ddpm", seed=0, gain_adjust=False, refine=0)
    half = out.shape[-1] // 2
    quiet, loud = out[: half - 4096].pow(2).mean().sqrt(), out[half + 4096:].pow(2).mean().sqrt()
    assert float(quiet) == pytest.approx(0.1 / 0.99 ** 0.5, rel=0.05)
    assert float(loud) > 0.7
    standard = load_recipe(TINY)
    plain = Vocoder(DiffWave.from_recipe(standard), standard).vocode(mel, schedule=one_step, sampler="ddpm", seed=0,
                                                                      gain_adjust=False, refine=0)
    assert float(plain[: half - 4096].pow(2).mean().sqrt()) > 0.7


@pytest.mark.parametrize("overrides, message", [
    (["diffusion.prior='energy'"], "diffusion.prior_reference must be > 0"),
    (["diffusion.prior='gamma'"], "diffusion.prior must be 'standard' or 'energy'"),
    (ENERGY + ["diffusion.prior_min=0"], "diffusion.prior_min must be in (0, 1]"),
    (ENERGY + ["model.conditional=false"], "'energy' needs a mel"),
])
def test_prior_settings_are_validated(overrides, message):
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        load_recipe(TINY, overrides)


def test_one_training_step_with_the_prior_runs(tmp_path, synth_folder):
    recipe = load_recipe(TINY, tiny_overrides(synth_folder, max_steps=2) + ENERGY)
    last, _ = train_run(recipe, tmp_path / "run")
    assert Vocoder.from_checkpoint(last).recipe.diffusion.prior == "energy"
    losses = [r["loss"] for r in read_metrics(tmp_path / "run") if "loss" in r]
    assert len(losses) == 2 and all(0.0 < x < 10.0 for x in losses)  # finite: no 1/std blow-up
