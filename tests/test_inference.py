"""Vocoder and Generator: chunked evaluation, lengths, seeds, checkpoint loading."""
from __future__ import annotations

import pytest
import torch

import audiodiff.inference as inference
from audiodiff.audio import MelSpectrogram
from audiodiff.checkpoint import Checkpoint, save_checkpoint
from audiodiff.devices import resolve_device
from audiodiff.diffusion import Schedule
from audiodiff.errors import AudiodiffError, AudioError
from audiodiff.inference import Generator, Vocoder, chunked_denoiser, load_model
from audiodiff.networks.diffwave import DiffWave
from audiodiff.recipe import load_recipe

from conftest import TINY, chirp


def random_network(recipe, seed: int = 0) -> DiffWave:
    """The recipe's network with every weight random (the output projection re-initialised)."""
    torch.manual_seed(seed)
    net = DiffWave.from_recipe(recipe)
    with torch.no_grad():
        torch.nn.init.normal_(net.output_projection.weight, std=0.3)
        net.output_projection.bias.fill_(0.01)
    return net


def recipe_with(*overrides: str):
    return load_recipe(TINY, ["data.root=/nowhere", *overrides])


@pytest.fixture(scope="module")
def vocoder() -> Vocoder:
    recipe = recipe_with()
    return Vocoder(random_network(recipe), recipe, device="cpu")


@pytest.fixture(scope="module")
def generator() -> Generator:
    recipe = recipe_with("model.conditional=false")
    return Generator(random_network(recipe, seed=1), recipe, device="cpu")


def speech_like_mel(vocoder: Vocoder, samples: int) -> torch.Tensor:
    return vocoder.mel(torch.from_numpy(chirp(samples / 22050, amp=0.3)[:samples])).cpu()


def vocode_with_chunk(vocoder: Vocoder, mel, chunk: int, **kwargs) -> torch.Tensor:
    saved = vocoder.chunk_samples
    vocoder.chunk_samples = chunk
    try:
        return vocoder.vocode(mel, **kwargs)
    finally:
        vocoder.chunk_samples = saved


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_chunked_equals_unchunked(vocoder, sampler):
    mel = speech_like_mel(vocoder, 64 * 256)  # 16384 samples: 4 chunks of 4096
    whole = vocode_with_chunk(vocoder, mel, 10 ** 9, sampler=sampler, seed=3)
    chunked = vocode_with_chunk(vocoder, mel, 4096, sampler=sampler, seed=3)
    odd = vocode_with_chunk(vocoder, mel, 3001, sampler=sampler, seed=3)  # chunk edges off the hop grid
    assert whole.shape == chunked.shape == (64 * 256,)
    assert whole.abs().max() > 0.05  # a non-trivial output
    assert (whole - chunked).abs().max() < 1e-5
    assert (whole - odd).abs().max() < 1e-5


def test_chunked_with_per_chunk_upsampling(vocoder, monkeypatch):
    mel = speech_like_mel(vocoder, 64 * 256)
    whole = vocode_with_chunk(vocoder, mel, 10 ** 9, seed=5)
    monkeypatch.setattr(inference, "CONDITION_CACHE_BYTES", 0)
    chunked = vocode_with_chunk(vocoder, mel, 4096, seed=5)
    odd = vocode_with_chunk(vocoder, mel, 3001, seed=5)  # chunk edges inside frames
    assert (whole - chunked).abs().max() < 1e-5
    assert (whole - odd).abs().max() < 1e-5


def test_per_chunk_upsampling_with_hop_300(monkeypatch):
    recipe = recipe_with("audio.hop_length=300", "audio.sample_rate=24000", "audio.n_fft=1200",
                         "audio.win_length=1200", "audio.preset='custom'")
    voc = Vocoder(random_network(recipe, seed=2), recipe, device="cpu")
    mel = voc.mel(torch.from_numpy(chirp(1.0, sr=24000, amp=0.3))).cpu()
    frames = mel.shape[-1]
    assert frames == 80
    whole = vocode_with_chunk(voc, mel, 10 ** 9, seed=0)
    monkeypatch.setattr(inference, "CONDITION_CACHE_BYTES", 0)
    chunked = vocode_with_chunk(voc, mel, 5000, seed=0)
    assert whole.shape == (frames * 300,)
    assert (whole - chunked).abs().max() < 1e-5


def test_chunked_denoiser_matches_one_pass(vocoder):
    net = vocoder.network
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 20000, generator=g)
    mel = torch.randn(2, 80, -(-20000 // 256), generator=g) - 4
    with torch.no_grad():
        cond = net.condition(mel)[..., :20000]
        level = torch.tensor([0.6, 0.95])
        one = net(x, level, cond)
        chunked = chunked_denoiser(net, lambda a, b: cond[..., a:b], chunk=1000)(x, level)
    assert (one - chunked).abs().max() < 1e-5
    assert one.abs().max() > 1e-2


def test_vocode_length_and_trim(vocoder):
    mel = speech_like_mel(vocoder, 37 * 256)
    assert mel.shape == (80, 37)
    calls = []
    wav = vocoder.vocode(mel, on_step=calls.append)
    assert wav.shape == (37 * 256,) and wav.dtype == torch.float32
    assert calls == [1, 2, 3, 4, 5, 6]  # the fast schedule by default
    assert wav.abs().max() <= 1.0
    batched = vocoder.vocode(torch.stack([mel, mel]))
    assert batched.shape == (2, 37 * 256)
    audio = torch.from_numpy(chirp(0.3, amp=0.3))  # 6615 samples: not a multiple of the hop
    out = vocoder.resynthesize(audio)
    assert out.shape == (6615,)


def test_vocode_seed(vocoder):
    mel = speech_like_mel(vocoder, 20 * 256)
    a = vocoder.vocode(mel, seed=1)
    b = vocoder.vocode(mel, seed=1)
    c = vocoder.vocode(mel, seed=2)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3
    d = vocoder.vocode(mel, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, d)


def test_fast_step_count_comes_from_the_recipe():
    """A recipe with 5 fast betas: `vocode` without steps takes 5 steps over exactly those
    betas (a fixed count of 6 would sample a sub-sampled training schedule instead)."""
    betas = (1e-4, 1e-3, 1e-2, 0.1, 0.5)
    recipe = recipe_with(f"diffusion.fast_betas={list(betas)}")
    voc = Vocoder(random_network(recipe), recipe, device="cpu")
    plan = voc.plan()
    assert recipe.diffusion.fast_steps == plan.steps == 5
    assert plan.schedule.betas.tolist() == list(betas) and plan.sampler == "ddpm"
    mel = speech_like_mel(voc, 8 * 256)
    steps = []
    default = voc.vocode(mel, on_step=steps.append)
    explicit = voc.vocode(mel, schedule=Schedule.from_betas(betas), sampler="ddpm", eta=0.0)
    assert len(steps) == 5 and torch.equal(default, explicit)


def test_a_plan_and_its_keyword_form_sample_alike(vocoder, generator):
    mel = speech_like_mel(vocoder, 12 * 256)
    plan = vocoder.plan(steps=3, sampler="ddim", eta=0.5)
    assert (plan.steps, plan.sampler, plan.eta, plan.gain_adjust, plan.refine) == (3, "ddim", 0.5, False, 0)
    assert torch.equal(vocoder.vocode(mel, plan, seed=2), vocoder.vocode(mel, steps=3, sampler="ddim", eta=0.5, seed=2))
    with pytest.raises(TypeError, match="not both"):
        vocoder.vocode(mel, plan, steps=3)
    with pytest.raises(TypeError, match="SamplingPlan"):
        vocoder.vocode(mel, 3)
    gplan = generator.plan(steps=2)
    assert torch.equal(generator.generate(0.05, plan=gplan, seed=1), generator.generate(0.05, steps=2, seed=1))
    with pytest.raises(AudiodiffError, match="vocoders"):
        generator.generate(0.05, gain_adjust=True)


def test_vocode_checks_the_mel(vocoder):
    with pytest.raises(AudioError, match=r"in\.npy: mel has shape \[64, 10\]"):
        vocoder.vocode(torch.zeros(64, 10) - 4, name="in.npy")
    with pytest.raises(AudioError, match="outside"):
        vocoder.vocode(torch.linspace(-80, 0, 800).reshape(80, 10))
    with pytest.raises(AudiodiffError, match="unknown sampler"):
        vocoder.vocode(torch.zeros(80, 2) - 4, sampler="euler")


def test_vocoder_mel_is_the_recipe_mel(vocoder):
    audio = torch.from_numpy(chirp(0.5))
    torch.testing.assert_close(vocoder.mel(audio), MelSpectrogram(vocoder.recipe.audio)(audio))


def test_generator_lengths_and_seed(generator):
    clips = generator.generate(seconds=0.5, steps=6)
    assert clips.shape == (1, round(0.5 * 22050))
    two = generator.generate(seconds=0.1, count=2, steps=6, seed=4)
    assert two.shape == (2, 2205)
    again = generator.generate(seconds=0.1, count=2, steps=6, seed=4)
    other = generator.generate(seconds=0.1, count=2, steps=6, seed=5)
    assert torch.equal(two, again)
    assert (two - other).abs().max() > 1e-3
    assert (two[0] - two[1]).abs().max() > 1e-3  # the clips of one call differ
    assert generator.plan().steps == 50
    calls = []
    generator.generate(seconds=0.01, on_step=calls.append)
    assert len(calls) == 50
    with pytest.raises(AudiodiffError, match="positive"):
        generator.generate(seconds=0.0)


def test_kind_mismatch_is_refused(vocoder, generator):
    with pytest.raises(AudiodiffError, match="unconditional"):
        Vocoder(generator.network, generator.recipe)
    with pytest.raises(AudiodiffError, match="mel-conditioned"):
        Generator(vocoder.network, vocoder.recipe)


def test_from_checkpoint_uses_ema_weights(tmp_path):
    recipe = recipe_with()
    live, ema = random_network(recipe, seed=0), random_network(recipe, seed=1)
    path = save_checkpoint(tmp_path / "c.pt", Checkpoint(recipe=recipe, model=live.state_dict(),
                                                         ema=ema.state_dict(), step=12))
    voc = Vocoder.from_checkpoint(path)
    assert voc.step == 12 and voc.recipe == recipe and voc.source == str(path)
    for key, value in ema.state_dict().items():
        assert torch.equal(voc.network.state_dict()[key], value)
    raw = Vocoder.from_checkpoint(path, ema=False)
    for key, value in live.state_dict().items():
        assert torch.equal(raw.network.state_dict()[key], value)
    assert isinstance(load_model(path), Vocoder)
    with pytest.raises(AudiodiffError, match="mel-conditioned"):
        Generator.from_checkpoint(path)


def test_load_model_picks_the_kind(tmp_path):
    recipe = recipe_with("model.conditional=false")
    net = random_network(recipe)
    path = save_checkpoint(tmp_path / "g.pt", Checkpoint(recipe=recipe, model=net.state_dict(),
                                                         ema=net.state_dict(), step=1))
    model = load_model(path)
    assert isinstance(model, Generator)
    assert model.sample_rate == 22050


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type in ("cpu", "cuda")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(AudiodiffError, match="not a device name"):
        resolve_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(AudiodiffError, match="CUDA is not available"):
            resolve_device("cuda")
