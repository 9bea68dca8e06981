"""The frame-level network family (networks/frames.py) behind the same diffusion:
built from a recipe, trained, resumed, exported, searched, and chunked exactly."""
from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
import torch

from audiodiff.checkpoint import Checkpoint, export_inference_copy, load_checkpoint, save_checkpoint
from audiodiff.diffusion import LossSpec, diffusion_loss, training_schedule
from audiodiff.errors import RecipeError
from audiodiff.inference import Generator, Vocoder
from audiodiff.networks import NETWORKS, build_network
from audiodiff.networks.frames import FrameDenoiser
from audiodiff.recipe import NETWORK_FAMILIES, load_recipe
from audiodiff.schedule_search import ClipScorer, search
from audiodiff.targets import eps_from, target_from_eps

from conftest import SR, TINY, chirp, raises_naming, read_metrics, sine, tiny_overrides, train_run

FRAMES = ["model.family='frames'", "model.channels=16", "model.blocks=2", "model.expansion=2",
          "model.target='x0'"]
HOP = 256


def frames_recipe(*extra: str, root: Path = Path("/nonexistent"), **train):
    return load_recipe(TINY, tiny_overrides(root, **train) + FRAMES + list(extra))


def perturbed(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """`net` with seeded random offsets on every weight, so the head is not near its
    quiet initial state and chunking errors would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net


def test_registry_names_the_recipe_families():
    assert tuple(NETWORKS) == NETWORK_FAMILIES == ("diffwave", "frames")
    assert isinstance(build_network(frames_recipe()), FrameDenoiser)


@pytest.mark.parametrize("conditional", [True, False])
def test_builds_from_a_recipe_and_keeps_the_contract(conditional):
    recipe = frames_recipe(f"model.conditional={str(conditional).lower()}")
    net = perturbed(build_network(recipe)).eval()
    assert net.conditional is conditional and net.cond_hop == HOP
    assert net.receptive_margin() % HOP == 0 and net.receptive_margin() >= 4 * HOP
    frames = 12
    audio = torch.randn(2, 1, frames * HOP)
    cond = net.condition(torch.randn(2, 80, frames) - 5) if conditional else None
    if conditional:
        assert cond.shape == (2, 80, frames)
    with torch.no_grad():
        out = net(audio, torch.tensor([0.3, 0.9]), cond)
    assert out.shape == (2, 1, frames * HOP) and bool(torch.isfinite(out).all())
    with torch.no_grad():  # deterministic: the same input gives the same output
        assert torch.equal(out, net(audio, torch.tensor([0.3, 0.9]), cond))


def test_a_conditional_model_needs_its_mel():
    net = build_network(frames_recipe())
    with pytest.raises(ValueError, match="cond"):
        net(torch.randn(1, 1, 4 * HOP), torch.tensor([0.5]), None)


@pytest.mark.parametrize("target", ["x0", "v"])
def test_targets_round_trip(target):
    g = torch.Generator().manual_seed(0)
    noisy, out = torch.randn(3, 1, 100, generator=g), torch.randn(3, 1, 100, generator=g)
    level = torch.tensor([0.05, 0.5, 0.99]).view(-1, 1, 1)
    eps = eps_from(out, noisy, level, target)
    assert torch.allclose(target_from_eps(eps, noisy, level, target), out, atol=1e-4)


def test_x0_loss_is_zero_for_a_perfect_clean_estimate():
    """A network that returns the true clean signal (as a noise estimate) has zero loss
    on the x0 target, and the MR-STFT term is zero too."""
    audio = torch.from_numpy(sine(0.2)).view(1, 1, -1)
    recipe = frames_recipe()
    schedule = training_schedule(recipe.diffusion)

    def oracle(noisy, level, cond):
        return eps_from(audio.expand_as(noisy), noisy, level.view(-1, 1, 1), "x0")

    spec = LossSpec(schedule, target="x0", stft_weight=1.0)
    loss = diffusion_loss(oracle, audio, None, spec, torch.Generator().manual_seed(0))
    assert float(loss) < 1e-4


@pytest.mark.parametrize("bad, key", [("model.family='wavenet'", "model.family"),
                                      ("model.target='score'", "model.target"),
                                      ("model.block_kernel=4", "model.block_kernel"),
                                      ("model.channels=0", "model.channels"),
                                      ("model.input_mask=1", "model.input_mask")])
def test_bad_recipe_value_names_the_key(bad, key):
    with pytest.raises(RecipeError) as err:
        load_recipe(TINY, tiny_overrides(Path("/x")) + FRAMES + [bad])
    message = str(err.value)
    assert key in message and "\n" not in message and str(TINY) in message


def test_input_mask_passes_the_input_through_at_full_gain():
    """With the mask fully open and the generated spectrum silent, the clean estimate is
    the noisy input divided by its signal level (the STFT pair inverts exactly); with the
    mask shut it is silence. Without `input_mask` there is no mask head."""
    assert build_network(frames_recipe()).mask_head is None
    net = build_network(frames_recipe("model.input_mask=true")).eval()
    g = torch.Generator().manual_seed(0)
    noisy = torch.randn(2, 1, 10 * HOP, generator=g) * 0.2
    level = torch.tensor([0.4, 0.95])
    cond = net.condition(torch.randn(2, 80, 10, generator=g) - 5)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(-30.0)  # magnitude e^-30: silent
        net.mask_head.weight.zero_()
        for bias, expected in ((30.0, noisy / level.view(-1, 1, 1)), (-30.0, torch.zeros_like(noisy))):
            net.mask_head.bias.fill_(bias)
            eps = net(noisy, level, cond)
            x0 = target_from_eps(eps, noisy, level.view(-1, 1, 1), "x0")
            assert float((x0 - expected).abs().max()) < 1e-4


@pytest.mark.parametrize("target", ["eps", "v"])
def test_input_mask_needs_the_x0_target(target):
    with raises_naming(RecipeError, "model.input_mask"):
        frames_recipe(f"model.target='{target}'", "model.input_mask=true")


def test_diffwave_predicts_noise_only():
    with pytest.raises(RecipeError, match="model.target"):
        load_recipe(TINY, tiny_overrides(Path("/x")) + ["model.target='x0'"])


@pytest.mark.parametrize("mask", [False, True], ids=["head", "input-mask"])
def test_chunked_vocoding_equals_whole_signal(mask):
    recipe = frames_recipe(f"model.input_mask={str(mask).lower()}")
    torch.manual_seed(0)
    vocoder = Vocoder(perturbed(build_network(recipe)), recipe)
    mel = vocoder.mel(torch.from_numpy(chirp(6.0)))
    margin = vocoder.network.receptive_margin()
    vocoder.chunk_samples = 1  # the smallest chunk allowed: 16 margins
    chunked = vocoder.vocode(mel, steps=3, seed=1, gain_adjust=False)
    assert mel.shape[-1] * HOP > 16 * margin * 2  # at least three chunks
    vocoder.chunk_samples = 10 ** 9
    whole = vocoder.vocode(mel, steps=3, seed=1, gain_adjust=False)
    assert chunked.shape == whole.shape == (mel.shape[-1] * HOP,)
    assert float((chunked - whole).abs().max()) < 1e-4 * float(whole.abs().max())
    assert float(whole.abs().max()) > 1e-3  # not trivially equal


@pytest.mark.parametrize("mask", [False, True], ids=["head", "input-mask"])
def test_chunked_sampling_equals_whole_signal(mask):
    recipe = frames_recipe("model.conditional=false", f"model.input_mask={str(mask).lower()}")
    generator = Generator(perturbed(build_network(recipe)), recipe)
    generator.chunk_samples = 1
    chunked = generator.generate(6.0, steps=2, seed=3)
    generator.chunk_samples = 10 ** 9
    whole = generator.generate(6.0, steps=2, seed=3)
    assert chunked.shape == whole.shape == (1, int(6.0 * SR))
    assert float((chunked - whole).abs().max()) < 1e-4 * float(whole.abs().max())


def test_generator_divides_its_samples_by_the_data_scale():
    plain = frames_recipe("model.conditional=false")
    scaled = frames_recipe("model.conditional=false", "diffusion.data_scale=4.0")
    assert scaled.diffusion.data_scale == 4.0
    net = perturbed(build_network(plain))
    a = Generator(net, plain).generate(0.5, steps=3, seed=1)
    b = Generator(net, scaled).generate(0.5, steps=3, seed=1)
    assert float(a.abs().max()) > 1e-3
    torch.testing.assert_close(b, a / 4.0)


def test_a_scaled_generator_says_its_scale_and_samples_at_its_level(tmp_path, run_main):
    recipe = frames_recipe("model.conditional=false", "diffusion.data_scale=4.0")
    net = perturbed(build_network(recipe))
    path = save_checkpoint(tmp_path / "step-00000001.pt", Checkpoint(recipe=recipe, model=net.state_dict(),
                                                                     ema=net.state_dict(), step=1))
    info = run_main("info", "-c", path)
    assert info.returncode == 0 and "fast schedule 6 steps, data scale 4" in info.stdout
    out = tmp_path / "gen.wav"
    assert run_main("sample", "-c", path, "--seconds", "0.5", "--steps", "3", "-o", out).returncode == 0
    wav, sr = sf.read(out)
    expected = Generator(net, recipe).generate(0.5, steps=3, seed=0)[0].numpy()
    assert sr == SR and len(wav) == len(expected) and abs(wav - expected).max() < 1e-3  # the scale divided out


@pytest.mark.parametrize("overrides, message", [
    (["model.conditional=false", "diffusion.data_scale=0"], "diffusion.data_scale must be positive"),
    (["diffusion.data_scale=2.0"], "diffusion.data_scale is for generators"),
])
def test_data_scale_is_validated(overrides, message):
    with raises_naming(RecipeError, message, "tiny"):
        frames_recipe(*overrides)


@pytest.mark.slow
def test_trains_resumes_bit_identically_exports_and_searches(tmp_path, synth_folder):
    def recipe(max_steps):
        return frames_recipe(root=synth_folder, max_steps=max_steps, checkpoint_every=2,
                             stft_loss_weight=1.0)

    train_run(recipe(4), tmp_path / "full")
    out = tmp_path / "resumed"
    train_run(recipe(2), out)
    last, text = train_run(recipe(4), out)
    assert "Resuming from step 2" in text and last == out / "step-00000004.pt"
    full = {m["step"]: m["loss"] for m in read_metrics(tmp_path / "full") if "loss" in m}
    resumed = {m["step"]: m["loss"] for m in read_metrics(out) if "loss" in m}
    assert sorted(full) == [1, 2, 3, 4] and resumed == full
    a, b = load_checkpoint(tmp_path / "full" / "step-00000004.pt"), load_checkpoint(last)
    for key in a.model:
        assert torch.equal(a.model[key], b.model[key]) and torch.equal(a.ema[key], b.ema[key])
    assert b.recipe.model.family == "frames"

    exported = export_inference_copy(b, tmp_path / "frames.pt", half=False)
    vocoder = Vocoder.from_checkpoint(exported)
    assert isinstance(vocoder.network, FrameDenoiser)
    wav = torch.from_numpy(sine(0.5, 330.0))
    reference = Vocoder.from_checkpoint(last).resynthesize(wav, steps=2, seed=0)
    exported_out = vocoder.resynthesize(wav, steps=2, seed=0)
    assert exported_out.shape == reference.shape and torch.equal(exported_out, reference)

    clips = [torch.from_numpy(sine(0.3, 330.0)), torch.from_numpy(chirp(0.3, seed=1))]
    results = search(ClipScorer(vocoder, clips, "log_mel"), [2], budget_s=2.0)
    assert [r.steps for r in results] == [2] and len(results[0].best.betas) == 2
    assert results[0].best.score <= min(results[0].baselines.values()) + 1e-9


def test_init_from_a_frames_checkpoint_keeps_the_family(tmp_path):
    recipe = frames_recipe()
    net = perturbed(build_network(recipe))
    path = save_checkpoint(tmp_path / "step-00000001.pt", Checkpoint(recipe=recipe, model=net.state_dict(),
                                                                     ema=net.state_dict(), step=1))
    vocoder = Vocoder.from_checkpoint(path)
    for key, value in net.state_dict().items():
        assert torch.equal(vocoder.network.state_dict()[key], value)


def test_info_describes_the_network_by_its_family():
    frames = load_recipe("kathleen-frames").model.describe()
    assert frames.startswith("frames: 8 ConvNeXt blocks x 192 channels") and "layers" not in frames
    assert load_recipe("kathleen").model.describe() == "DiffWave: 12 layers x 32 channels, dilation cycle 10"
