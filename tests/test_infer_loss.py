"""InferGrad's infer loss (audiodiff/training/infer_loss.py): the few-step chain's output scored
against the clean audio, with gradients through the chain; and its training options."""
from __future__ import annotations

import math

import pytest
import torch

from audiodiff.audio import MelSpectrogram
from audiodiff.consistency import MelConsistency
from audiodiff.diffusion import RowShare, inference_schedule
from audiodiff.errors import RecipeError
from audiodiff.training.infer_loss import infer_loss, infer_schedule
from audiodiff.recipe import DiffusionConfig, load_recipe
from audiodiff.samplers import ddpm
from audiodiff.spectral import mr_stft_loss

from conftest import TINY, read_metrics, tiny_overrides, train_run

SCHEDULE = inference_schedule(DiffusionConfig(), 4)  # geometric betas 1e-4 .. 0.5


def speech_like(batch: int = 2, length: int = 4096) -> torch.Tensor:
    """[batch, 1, length]: harmonic tones at 22.05 kHz, |x| <= 0.6 (no clamping in the chain)."""
    t = torch.arange(length, dtype=torch.float32) / 22050
    rows = [sum(0.2 / k * torch.sin(2 * math.pi * k * (150 + 60 * b) * t) for k in range(1, 4)) for b in range(batch)]
    return torch.stack(rows).unsqueeze(1)


def oracle(x0: torch.Tensor):
    """A denoiser that knows the clean signal: eps = (x - level x0) / sqrt(1 - level^2)."""
    def denoise(x, level):
        a = level.double().view(-1, 1, 1)
        return ((x.double() - a * x0.double()) / (1 - a ** 2).sqrt()).float()
    return denoise


def test_an_oracle_chain_ends_on_the_clean_audio():
    """DDPM's last step with the true noise returns x0 exactly, so the loss is ~0, with
    unit noise and with a prior."""
    x0 = speech_like()
    std = torch.full_like(x0, 0.3)
    for prior in (None, std):
        loss = infer_loss(oracle(x0), x0, SCHEDULE, torch.Generator().manual_seed(0), std=prior)
        assert float(loss) < 1e-3


def test_the_loss_is_the_mr_stft_of_the_samplers_output_from_the_same_draws():
    x0 = speech_like()
    std = torch.linspace(0.1, 1.0, x0.shape[-1]).expand_as(x0).contiguous()
    halve = lambda x, level: 0.5 * x  # noqa: E731
    loss = infer_loss(halve, x0, SCHEDULE, torch.Generator().manual_seed(5), std=std)
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(x0.shape, generator=g) * std
    sample = ddpm(halve, SCHEDULE, noise, g, noise_scale=std)
    expected = mr_stft_loss(x0.squeeze(1), sample.squeeze(1)).mean()
    assert float(expected) > 0.5
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    other = infer_loss(halve, x0, SCHEDULE, torch.Generator().manual_seed(6), std=std)
    assert float(other) != pytest.approx(float(loss), rel=1e-4)


def test_gain_adjustment_runs_in_the_chain_when_given_the_mel():
    recipe = load_recipe(TINY)
    transform = MelSpectrogram(recipe.audio)
    x0 = speech_like(length=8192)
    mel = transform(x0.squeeze(1))
    halve = lambda x, level: 0.5 * x  # noqa: E731
    raw = infer_loss(halve, x0, SCHEDULE, torch.Generator().manual_seed(1))
    adjusted = infer_loss(halve, x0, SCHEDULE, torch.Generator().manual_seed(1),
                          project=MelConsistency(transform, mel).project)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x0.shape, generator=g)
    sample = ddpm(halve, SCHEDULE, noise, g, project=MelConsistency(transform, mel).project)
    assert float(adjusted) == pytest.approx(float(mr_stft_loss(x0.squeeze(1), sample.squeeze(1)).mean()), rel=1e-5)
    assert float(adjusted) < 0.8 * float(raw)  # matching the mel at each step brings the output closer


def test_a_split_batch_meets_the_same_noise_as_the_whole():
    """Shares of a batch of 4 (rows 0, 1-2, 3, as processes or accumulation steps take
    them) give, weighted by their rows, the whole batch's loss; a share scored as a batch
    of its own meets other noise."""
    transform = MelSpectrogram(load_recipe(TINY).audio)
    x0 = speech_like(batch=4, length=8192)
    mel = transform(x0.squeeze(1))
    std = torch.linspace(0.2, 1.0, x0.shape[-1]).expand_as(x0).contiguous()
    halve = lambda x, level: 0.5 * x  # noqa: E731

    def loss(rows: slice, share: bool = False) -> float:
        g = torch.Generator().manual_seed(3)
        draws = RowShare(g, rows.start, 4) if share else g
        return float(infer_loss(halve, x0[rows], SCHEDULE, draws, std=std[rows],
                                project=MelConsistency(transform, mel[rows]).project))
    whole = loss(slice(0, 4))
    parts = [(loss(slice(o, o + n), share=True), n) for o, n in ((0, 1), (1, 2), (3, 1))]
    assert sum(value * n for value, n in parts) / 4 == pytest.approx(whole, rel=1e-5)
    assert loss(slice(1, 3)) != pytest.approx(parts[1][0], rel=1e-3)


def test_the_gradient_flows_through_every_step():
    x0 = speech_like()
    scale = torch.tensor(0.5, requires_grad=True)
    loss = infer_loss(lambda x, level: scale * x, x0, SCHEDULE, torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad(loss, scale)
    assert math.isfinite(float(grad)) and abs(float(grad)) > 1e-3


@pytest.mark.parametrize("override, key", [
    ("train.infer_loss_weight=-0.1", "train.infer_loss_weight"),
    ("train.infer_steps=0", "train.infer_steps"),
    ("train.infer_betas=[0.01, 1.5]", "train.infer_betas"),
    ("train.infer_betas=[0.01, 0.1, 0.5]", "train.infer_betas"),  # 3 betas, infer_steps 6
])
def test_bad_infer_options_fail_on_load(override, key):
    with pytest.raises(RecipeError) as info:
        load_recipe(TINY, [override])
    assert key in str(info.value) and str(TINY) in str(info.value) and "\n" not in str(info.value)


def test_an_unconditional_model_has_no_mel_to_sample_from():
    with pytest.raises(RecipeError, match=r"train.infer_loss_weight.*model.conditional"):
        load_recipe(TINY, ["model.conditional=false", "train.infer_loss_weight=0.1"])


def test_training_adds_the_weighted_term(tmp_path, synth_folder):
    """The first step sees the same weights, crops and noise with or without the term
    (the chain draws its noise after the noise loss's): the logged loss is the plain
    one plus the weight times the logged infer term of an untrained network (> 0.5)."""
    def first_record(name: str, *extra: str) -> dict:
        recipe = load_recipe(TINY, tiny_overrides(synth_folder, max_steps=1) + ["train.tensorboard=false", *extra])
        train_run(recipe, tmp_path / name)
        return next(r for r in read_metrics(tmp_path / name) if "loss" in r)

    plain = first_record("plain")
    weighted = first_record("infer", "train.infer_loss_weight=0.5", "train.infer_steps=2",
                            "train.infer_gain_adjust=true")
    assert "infer_loss" not in plain and weighted["infer_loss"] > 0.5
    assert weighted["loss"] == pytest.approx(plain["loss"] + 0.5 * weighted["infer_loss"], rel=1e-5)


def test_the_chain_is_the_given_betas_or_the_default_schedule():
    betas = [0.00106, 0.00335, 0.0429, 0.272]
    given = infer_schedule(load_recipe(TINY, ["train.infer_steps=4", f"train.infer_betas={betas}"]))
    assert given.betas.tolist() == pytest.approx(betas)
    default = infer_schedule(load_recipe(TINY, ["train.infer_steps=4"]))
    assert default.betas.tolist() == pytest.approx(SCHEDULE.betas.tolist())
    assert default.betas[-1] == pytest.approx(0.5)


def test_given_betas_survive_the_checkpoints_recipe():
    recipe = load_recipe(TINY, ["train.infer_steps=2", "train.infer_betas=[0.01, 0.3]"])
    again = type(recipe).from_dict(recipe.to_dict())
    assert again.train.infer_betas == (0.01, 0.3) and again == recipe
