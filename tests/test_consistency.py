"""Mel consistency (consistency.py): the frame-aligned STFT pair, the gain projection,
refinement, the samplers' projection hook and the vocode/export/info options."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.audio import MelSpectrogram
from audiodiff.checkpoint import Checkpoint, export_inference_copy, load_checkpoint, save_checkpoint
from audiodiff.consistency import MelConsistency, check_options
from audiodiff.diffusion import inference_schedule
from audiodiff.errors import AudiodiffError, CheckpointError
from audiodiff.evaluation.metrics import log_mel_distance
from audiodiff.inference import Vocoder
from audiodiff.networks.diffwave import DiffWave
from audiodiff.recipe import MEL_PRESETS, AudioConfig, load_recipe
from audiodiff.samplers import SAMPLERS

from conftest import SR, TINY, chirp, raises_naming

PRESETS = [AudioConfig(preset=name, **MEL_PRESETS[name]) for name in MEL_PRESETS]


def _clip(config: AudioConfig, seconds: float = 0.5) -> torch.Tensor:
    """A chirp, [samples] a whole number of hops long; quiet enough that no mel value
    reaches the diffwave preset's 0 dB ceiling (a clamped mel cannot be matched)."""
    x = torch.from_numpy(chirp(seconds, sr=config.sample_rate, amp=0.1, seed=1)).float()
    return x[: x.shape[-1] // config.hop_length * config.hop_length]


@pytest.mark.parametrize("config", PRESETS + [dataclasses.replace(PRESETS[0], win_length=800)],
                         ids=["hifigan", "diffwave", "short-window"])
def test_stft_pair_inverts_exactly(config):
    transform = MelSpectrogram(config)
    x = torch.randn(2, 5000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3
    spec = transform.stft(x)
    assert spec.shape == (2, config.n_fft // 2 + 1, transform.frames(5000))
    assert (transform.istft(spec, 5000) - x).abs().max() < 1e-12


def test_istft_keeps_a_norm_per_length_and_inverts_each():
    """Chunked inference alternates 2-3 signal lengths: each keeps its overlap-add norm
    (no recompute per call), the oldest goes past OLA_NORMS_KEPT, and every length still
    inverts exactly."""
    from audiodiff.audio import OLA_NORMS_KEPT

    transform = MelSpectrogram(PRESETS[0])
    lengths = [5000, 7000, 5000, 9000, 7000] + [1000 * k for k in range(10, 10 + OLA_NORMS_KEPT)]
    for i, samples in enumerate(lengths):
        x = torch.randn(samples, generator=torch.Generator().manual_seed(i), dtype=torch.float64) * 0.3
        assert (transform.istft(transform.stft(x), samples) - x).abs().max() < 1e-12
        if i == 4:
            assert len(transform._ola_norms) == 3  # 5000, 7000, 9000: none recomputed
    assert len(transform._ola_norms) == OLA_NORMS_KEPT


@pytest.mark.parametrize("config", PRESETS, ids=list(MEL_PRESETS))
def test_stft_frames_are_the_conventions_frames(config):
    """Frame i of `stft` is frame i of the convention's own code: HiFi-GAN reflect-pads
    (n_fft - hop) / 2 each side and frames without centring; lmnt (torchaudio) centres
    frames with reflect padding."""
    x = torch.randn(5120, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.3
    window = torch.hann_window(config.win_length, dtype=torch.float64)
    if config.center:
        ref = torch.stft(x, config.n_fft, config.hop_length, config.win_length, window, center=True,
                         pad_mode="reflect", return_complex=True)
    else:
        pad = (config.n_fft - config.hop_length) // 2
        padded = torch.nn.functional.pad(x[None, None], (pad, pad), mode="reflect")[0, 0]
        ref = torch.stft(padded, config.n_fft, config.hop_length, config.win_length, window, center=False,
                         return_complex=True)
    ours = MelSpectrogram(config).stft(x)
    assert ours.shape[-1] == 5120 // config.hop_length and ref.shape[-1] >= ours.shape[-1]
    assert (ours - ref[:, :ours.shape[-1]]).abs().max() < 1e-5  # float32 window; a shifted frame is off by O(1)


@pytest.mark.parametrize("config", PRESETS, ids=list(MEL_PRESETS))
def test_projection_keeps_a_consistent_signal_and_pulls_noise_to_the_mel(config):
    transform = MelSpectrogram(config)
    x = _clip(config)
    check = MelConsistency(transform, transform(x)[None])
    assert (check.project(x[None]) - x).abs().max() < 1e-5  # gain 1 everywhere: a fixed point
    noise = 0.1 * torch.randn(1, x.shape[-1], generator=torch.Generator().manual_seed(0))
    distances = [log_mel_distance(x, check.refine(noise, k)[0], config) for k in (0, 1, 8, 32)]
    assert distances[0] > 2.0 and distances[1] < 0.5 and distances[2] < 0.25 and distances[3] < 0.15
    assert distances == sorted(distances, reverse=True)
    assert check.project(noise[:, None]).shape == (1, 1, x.shape[-1])  # [batch, 1, samples] kept


def test_clamped_mel_values_are_bounds_not_targets():
    """The diffwave preset clamps loud bands at 0 dB and both presets clamp quiet ones at
    a floor: a loud sine after silence is a fixed point (neither cut down to the ceiling
    nor raised to the floor), and noise in a floor band is only attenuated."""
    config = PRESETS[1]
    transform = MelSpectrogram(config)
    t = torch.arange(8192) / config.sample_rate
    x = torch.cat([torch.zeros(8192), 0.9 * torch.sin(2 * torch.pi * 200 * t)])
    mel = transform(x)
    assert (mel >= 1.0).any() and (mel <= 0.0).any()  # both clamps are hit
    check = MelConsistency(transform, mel[None])
    assert (check.project(x[None]) - x).abs().max() < 1e-4
    assert (check.refine(x[None], 8) - x).abs().max() < 1e-4
    hiss = x + 1e-6 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    out = check.project(hiss[None])[0]
    assert out[:4096].abs().max() <= hiss[:4096].abs().max()


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_an_identity_projection_leaves_the_samplers_unchanged(name):
    schedule = inference_schedule(load_recipe(TINY).diffusion, 6)
    noise = torch.randn(1, 1, 512, generator=torch.Generator().manual_seed(0))
    def denoise(x, level):  # level = sqrt(alpha_bar); clean estimate 0.1 x / level: no clamping
        a = float(level[0])
        return 0.9 * x / (1 - a * a) ** 0.5

    plain = SAMPLERS[name](denoise, schedule, noise, torch.Generator().manual_seed(1))
    same = SAMPLERS[name](denoise, schedule, noise, torch.Generator().manual_seed(1), project=lambda x0: x0)
    assert plain.abs().max() > 1e-3 and (plain - same).abs().max() < 1e-5 * plain.abs().max()


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_samplers_call_the_projection_once_per_step_and_use_it(name):
    schedule = inference_schedule(load_recipe(TINY).diffusion, 6)
    noise = torch.randn(1, 1, 512, generator=torch.Generator().manual_seed(0))
    seen = []

    def project(x0):
        seen.append(x0.shape)
        return torch.zeros_like(x0)  # every clean estimate is silence

    def denoise(x, level):
        return torch.zeros_like(x)

    out = SAMPLERS[name](denoise, schedule, noise, torch.Generator().manual_seed(1), project=project)
    assert seen == [(1, 1, 512)] * 6
    assert out.abs().max() < 1e-6  # the last step returns the projected estimate (up to round-off)
    free = SAMPLERS[name](denoise, schedule, noise, torch.Generator().manual_seed(1))
    assert free.abs().max() > 0.01


def test_gain_adjustment_and_refinement_bring_an_untrained_vocoder_to_the_mel(tiny_ckpt):
    vocoder = Vocoder.from_checkpoint(tiny_ckpt)
    config = vocoder.recipe.audio
    x = _clip(config)
    mel = vocoder.mel(x)
    raw = vocoder.vocode(mel, steps=2)  # a training checkpoint: no mel consistency unless asked
    assert torch.equal(raw, vocoder.vocode(mel, steps=2, gain_adjust=False, refine=0))
    adjusted = vocoder.vocode(mel, steps=2, gain_adjust=True)
    refined = vocoder.vocode(mel, steps=2, gain_adjust=True, refine=8)
    d = [log_mel_distance(x, y, config) for y in (raw, adjusted, refined)]
    assert d[0] > 1.0 and d[1] < 0.6 * d[0] and d[2] < 0.5 * d[1], d
    assert torch.equal(refined, vocoder.vocode(mel, steps=2, gain_adjust=True, refine=8))  # seeded
    assert refined.abs().max() <= 1.0
    with pytest.raises(AudiodiffError, match="refine -1: must be >= 0"):
        vocoder.vocode(mel, steps=2, refine=-1)


def test_export_stores_default_refine_and_vocode_info_say_it(tmp_path, tiny_ckpt, run_main):
    out = tmp_path / "exported.pt"
    result = run_main("export", tiny_ckpt, "-o", out, "--refine", "5", "--gain-adjust")
    assert result.returncode == 0, result.stderr
    data = load_checkpoint(out)
    assert data.defaults.refine == 5 and data.defaults.gain_adjust is True
    exported, trained = Vocoder.from_checkpoint(out).plan(), Vocoder.from_checkpoint(tiny_ckpt).plan()
    assert (exported.refine, exported.gain_adjust) == (5, True)
    assert (trained.refine, trained.gain_adjust) == (0, False)
    assert "mel consistency: gain adjustment on, 5 refinement iterations" in run_main("info", "-c", out).stdout
    assert "gain adjustment off, 0 refinement iterations" in run_main("info", "-c", tiny_ckpt).stdout
    clip = tmp_path / "in.wav"
    sf.write(clip, _clip(data.recipe.audio).numpy(), SR, subtype="PCM_16")
    voc = run_main("vocode", "-c", out, clip, "-o", tmp_path / "o.wav", "--steps", "2")
    assert voc.returncode == 0 and "mel gain adjustment, 5 refinement iterations" in voc.stderr
    raw = run_main("vocode", "-c", out, clip, "-o", tmp_path / "r.wav", "--steps", "2",
                   "--no-gain-adjust", "--refine", "0")
    assert raw.returncode == 0 and "gain adjustment" not in raw.stderr and "refinement" not in raw.stderr
    a, b = sf.read(tmp_path / "o.wav")[0], sf.read(tmp_path / "r.wav")[0]
    assert a.shape == b.shape and np.abs(a - b).max() > 0.01


def test_bad_default_refine_in_a_checkpoint_is_one_line(tmp_path, tiny_ckpt):
    data = load_checkpoint(tiny_ckpt)
    bad = tmp_path / "bad.pt"
    export_inference_copy(data.with_defaults(data.defaults.with_settings(refine=3)), bad)
    payload = torch.load(bad, weights_only=True)
    payload["default_refine"] = -2
    torch.save(payload, bad)
    with raises_naming(CheckpointError, bad, "default_refine", "-2"):
        load_checkpoint(bad)
    payload["default_refine"], payload["default_gain_adjust"] = 3, "yes"
    torch.save(payload, bad)
    with raises_naming(CheckpointError, bad, "default_gain_adjust", "'yes'"):
        load_checkpoint(bad)


def test_negative_refine_on_the_command_line_is_rejected(tmp_path, tiny_ckpt, run_main):
    clip = tmp_path / "in.wav"
    sf.write(clip, _clip(PRESETS[0]).numpy(), SR, subtype="PCM_16")
    result = run_main("vocode", "-c", tiny_ckpt, clip, "-o", tmp_path / "o.wav", "--refine", "-1")
    assert result.returncode == 2 and not (tmp_path / "o.wav").exists()
    assert result.stderr.strip() == "error: --refine -1: must be >= 0"


def test_mel_options_on_an_unconditional_model_are_one_line_errors(tmp_path, run_main):
    recipe = load_recipe(TINY, ["model.conditional=false", "model.residual_layers=2", "model.residual_channels=8"])
    net = DiffWave.from_recipe(recipe)
    ckpt = save_checkpoint(tmp_path / "gen.pt", Checkpoint(recipe=recipe, model=net.state_dict(),
                                                           ema=net.state_dict(), step=1))
    result = run_main("export", ckpt, "-o", tmp_path / "out.pt", "--refine", "3")
    message = "--gain-adjust/--no-gain-adjust and --refine apply to vocoders; this model is unconditional"
    assert result.returncode == 2 and message in " ".join(result.stderr.split())
    assert not (tmp_path / "out.pt").exists()
    result = run_main("bench", "--recipe", TINY, "--set", "model.conditional=false", "--no-gain-adjust")
    assert result.returncode == 2 and "apply to vocoders" in result.stderr
    ref = tmp_path / "ref.wav"
    sf.write(ref, _clip(PRESETS[0]).numpy(), SR, subtype="PCM_16")
    result = run_main("eval", ref, "-c", ckpt, "--gain-adjust", "--out-dir", tmp_path / "ev")
    assert result.returncode == 2 and message in " ".join(result.stderr.split())
    assert not (tmp_path / "ev").exists()


def test_check_options_is_the_one_rule_for_the_mel_options():
    check_options(None, None, conditional=False, where="gen.pt")  # nothing given: fine for any model
    check_options(True, 0, conditional=True)
    with raises_naming(AudiodiffError, "--refine -2"):
        check_options(None, -2)
    with raises_naming(AudiodiffError, "gen.pt", "--gain-adjust", "--refine"):
        check_options(False, None, conditional=False, where="gen.pt")
