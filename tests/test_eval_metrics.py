"""Quality metrics on constructed cases with known answers (audiodiff.evaluation.metrics)."""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from audiodiff.audio import MelSpectrogram, load_audio
from audiodiff.errors import AudiodiffError
from audiodiff.evaluation import metrics as M
from audiodiff.evaluation.baselines import band_griffin_lim, griffin_lim, mel_to_magnitude
from audiodiff.recipe import MEL_PRESETS, AudioConfig

from conftest import LJSPEECH_MINI, SR

HIFIGAN = AudioConfig(**MEL_PRESETS["hifigan"], preset="hifigan")
DIFFWAVE = AudioConfig(**MEL_PRESETS["diffwave"], preset="diffwave")
# Decreasing SNR: more noise, every score worse. Not below 10 dB: there F0 RMSE, taken over the
# frames voiced in both signals, drops again as the hardest frames stop counting as voiced
# (the V/UV error rate, reported beside it, is what grows).
SNRS_DB = (40.0, 30.0, 20.0, 15.0, 10.0)


def voiced(seconds: float = 2.0, f0: float = 140.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A speech-like signal: harmonics of a vibrato F0 under a formant-ish tilt, in syllables."""
    t = np.arange(int(seconds * sr)) / sr
    freq = f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(freq) / sr
    x = sum(np.sin(k * phase) / k * (1.5 if 3 <= k <= 6 else 1.0) for k in range(1, 30) if k * f0 < sr / 2.5)
    envelope = np.clip(np.sin(2 * np.pi * 2.0 * t), 0, None) ** 0.5  # 4 syllables a second with pauses
    rng = np.random.default_rng(seed)
    x = envelope * x + 0.002 * rng.standard_normal(len(t))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """3 s of a real LJSpeech clip when ../shared/data is there, else a synthetic voiced signal."""
    clip = LJSPEECH_MINI / "wavs" / "LJ001-0001.wav"
    if clip.is_file():
        return load_audio(clip, SR)[:3 * SR]
    return voiced(3.0)


def add_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    power = float(np.mean(x.astype(np.float64) ** 2))
    return (x + math.sqrt(power / 10 ** (snr_db / 10)) * rng.standard_normal(len(x))).astype(np.float32)


def test_identical_signals_score_best(speech):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    scores = M.PairScorer(speech, SR, HIFIGAN).score(speech.copy())
    assert scores["log_mel"] == 0.0
    assert scores["mr_stft"] == 0.0
    assert scores["mcd_db"] == 0.0
    assert scores["pesq_wb"] == pytest.approx(4.644, abs=0.01)
    assert scores["stoi"] == pytest.approx(1.0, abs=1e-6)
    assert scores["f0_rmse_cents"] == 0.0 and scores["vuv_error"] == 0.0


def test_noise_makes_every_score_worse_monotonically(speech):
    real = (LJSPEECH_MINI / "wavs" / "LJ001-0001.wav").is_file()  # the synthetic signal stays voiced at 10 dB
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    scorer = M.PairScorer(speech, SR, HIFIGAN)
    runs = [scorer.score(speech)] + [scorer.score(add_noise(speech, snr)) for snr in SNRS_DB]
    for metric in M.PAIR_METRICS:
        values = [r[metric.key] for r in runs]
        assert all(np.isfinite(values)), (metric.key, values)
        sign = 1 if metric.better == "lower" else -1
        worse = [sign * v for v in values]  # increasing when each step is worse
        if metric.key in ("f0_rmse_cents", "vuv_error"):
            # pitch is quantised (pYIN's 10-cent grid): equal at close SNRs is allowed, never better
            assert all(b >= a for a, b in zip(worse, worse[1:])), (metric.key, values)
            assert worse[-1] > worse[0] or (metric.key == "vuv_error" and not real), (metric.key, values)
        else:
            assert all(b > a for a, b in zip(worse, worse[1:])), (metric.key, values)
    assert runs[-1]["pesq_wb"] < 1.5 and runs[-1]["stoi"] < 0.97  # 10 dB of white noise is bad for PESQ


@pytest.mark.parametrize("freq", [150.0, 220.0, 330.0])
def test_pure_tone_f0_found_within_a_few_cents(freq):
    # (pYIN's pitch grid is 10 cents; below ~110 Hz its estimate of a pure tone is ~10 cents sharp
    # with 64 ms frames, a bias that cancels in the RMSE between two signals)
    tone = (0.5 * np.sin(2 * np.pi * freq * np.arange(SR) / SR)).astype(np.float32)
    f0, voiced_flags = M.pitch_track(M.to_metric_rate(tone, SR))
    assert voiced_flags.mean() > 0.9
    cents = 1200 * np.log2(np.nanmedian(f0[voiced_flags]) / freq)
    assert abs(cents) < 5, cents


def test_f0_rmse_of_a_semitone_is_100_cents():
    t = np.arange(SR) / SR
    a = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    b = (0.5 * np.sin(2 * np.pi * 220 * 2 ** (1 / 12) * t)).astype(np.float32)
    rmse, vuv = M.f0_rmse_cents(a, b, SR)
    assert rmse == pytest.approx(100, abs=8)
    assert vuv < 0.05
    silence = np.zeros_like(a)
    rmse, vuv = M.f0_rmse_cents(a, silence, SR)
    assert math.isnan(rmse) and vuv > 0.9  # nothing voiced in both; every voiced frame lost


def test_gain_known_answers():
    """A gain g changes ln-magnitudes by ln g everywhere: log-mel L1 = |ln g|, MR-STFT =
    |1 - g| + |ln g|, and only c0 of the mel-cepstrum (which MCD leaves out)."""
    rng = np.random.default_rng(1)
    x = (0.3 * rng.standard_normal(SR)).astype(np.float32)
    y = 0.5 * x
    assert M.log_mel_distance(torch.from_numpy(x), torch.from_numpy(y), HIFIGAN) == pytest.approx(math.log(2), abs=1e-3)
    assert M.mr_stft_distance(x, y) == pytest.approx(0.5 + math.log(2), abs=2e-3)
    assert M.mel_cepstral_distortion(x, y, HIFIGAN) == pytest.approx(0.0, abs=1e-3)
    c = M.mel_cepstrum(x, HIFIGAN) - M.mel_cepstrum(y, HIFIGAN)
    assert np.allclose(c[:, 0], math.log(2), atol=1e-3)  # ln|H| = c0 + 2 sum c_m cos: c0 carries the gain


def test_mcd_of_a_known_cepstral_difference():
    """ln-mel spectra that differ by d * cos(pi m (k + 1/2) / K) over the bands differ in c_m
    by d / 2 and nowhere else: MCD = 10 / ln 10 * sqrt(2 (d / 2)^2) dB, on every frame."""
    d, m, bands = 0.3, 5, HIFIGAN.n_mels
    pattern = d * np.cos(np.pi * m * (np.arange(bands) + 0.5) / bands)
    rng = np.random.default_rng(3)
    a = rng.normal(-4, 2, size=(bands, 50))
    ca, cb = M.cepstrum_of_log_mel(a), M.cepstrum_of_log_mel(a + pattern[:, None])
    assert np.allclose(cb - ca, np.eye(M.MCD_ORDER + 1)[m] * d / 2, atol=1e-12)
    assert M.mcd_of_cepstra(ca, cb) == pytest.approx(10 / math.log(10) * math.sqrt(2) * d / 2, rel=1e-9)  # 0.921 dB
    assert M.mcd_of_cepstra(ca, M.cepstrum_of_log_mel(a + 5.0)) == pytest.approx(0, abs=1e-12)  # a level: c0 only


@pytest.mark.parametrize("config", [HIFIGAN, DIFFWAVE], ids=["hifigan", "diffwave"])
def test_griffin_lim_inverts_the_presets_mel_in_place(config):
    x = voiced(1.0)
    mel = MelSpectrogram(config)(torch.from_numpy(x))
    mag = mel_to_magnitude(mel, config)
    norm = np.sqrt(np.sum(torch.hann_window(config.win_length).numpy().astype(np.float64) ** 2))
    again = MelSpectrogram(config).compress(torch.from_numpy(mag / (norm if config.normalized else 1.0)).float())
    assert torch.allclose(again, mel, atol=1e-4)  # the compression is undone exactly
    y = griffin_lim(mel, config, len(x))
    assert y.shape == x.shape and np.isfinite(y).all()
    ln = AudioConfig(**{**MEL_PRESETS[config.preset], "compression": "ln"}, preset=config.preset)
    dist = {lag: M.log_mel_distance(torch.from_numpy(x), torch.from_numpy(np.roll(y, lag)), ln) for lag in (-64, 0, 64)}
    assert dist[0] < 0.5 and dist[0] < dist[-64] and dist[0] < dist[64], dist  # aligned with the input
    assert 0.5 < np.std(y) / np.std(x) < 2.0


@pytest.mark.parametrize("config", [HIFIGAN, DIFFWAVE], ids=["hifigan", "diffwave"])
def test_band_griffin_lim_inverts_the_mel_closer_than_librosas(config):
    """From white noise, with no network: aligned with the input, seeded, and closer in
    log-mel than librosa's Griffin-Lim with as many iterations."""
    x = voiced(1.0)
    mel = MelSpectrogram(config)(torch.from_numpy(x))
    y = band_griffin_lim(mel, config, len(x))
    assert y.shape == x.shape and y.dtype == np.float32 and np.array_equal(y, band_griffin_lim(mel, config, len(x)))
    ln = AudioConfig(**{**MEL_PRESETS[config.preset], "compression": "ln"}, preset=config.preset)
    dist = {lag: M.log_mel_distance(torch.from_numpy(x), torch.from_numpy(np.roll(y, lag)), ln) for lag in (-64, 0, 64)}
    assert dist[0] < 0.2 and dist[0] < dist[-64] and dist[0] < dist[64], dist
    librosa_gl = M.log_mel_distance(torch.from_numpy(x), torch.from_numpy(griffin_lim(mel, config, len(x))), ln)
    assert dist[0] < librosa_gl, (dist[0], librosa_gl)


def test_set_statistics_known_answers():
    rng = np.random.default_rng(2)
    clips = [(0.2 * rng.standard_normal(SR // 2)).astype(np.float32) for _ in range(4)]
    ref = M.set_features(clips, HIFIGAN)
    same = M.set_distances(M.set_features([c.copy() for c in clips], HIFIGAN), ref)
    assert same["mean_log_mel_dist"] == 0 and same["loudness_w1_db"] == 0 and same["flatness_w1"] == 0
    half = M.set_distances(M.set_features([0.5 * c for c in clips], HIFIGAN), ref)
    assert half["mean_log_mel_dist"] == pytest.approx(math.log(2), abs=1e-3)
    assert half["loudness_w1_db"] == pytest.approx(20 * math.log10(2), abs=0.01)  # 6.02 dB
    assert half["flatness_w1"] < 1e-3  # flatness does not depend on the level
    tones = M.set_distances(M.set_features([voiced(0.5, seed=i) for i in range(4)], HIFIGAN), ref)
    assert tones["flatness_w1"] > 0.1 and tones["mean_log_mel_dist"] > 1
    assert M.wasserstein_1d(np.arange(10.0), np.arange(10.0) + 3) == pytest.approx(3.0)


@pytest.mark.parametrize("package", ["pesq", "speechmos", "onnxruntime", "requests"])
def test_missing_extra_names_what_to_install(monkeypatch, package):
    monkeypatch.setitem(sys.modules, package, None)  # as if not installed
    with pytest.raises(AudiodiffError) as info:
        M.require_eval_extra()
    assert package in str(info.value) and 'pip install "audiodiff[eval]"' in str(info.value)
    assert "\n" not in str(info.value)


@pytest.fixture(scope="module")
def dnsmos() -> M.DnsmosScorer:
    pytest.importorskip("speechmos")
    pytest.importorskip("onnxruntime")
    return M.DnsmosScorer()


def test_dnsmos_rates_clean_speech_above_the_same_speech_in_heavy_noise(ljspeech_mini, dnsmos):
    """LJSpeech is studio speech (OVRL about 3.3, BAK about 4.0); at 0 dB SNR of white noise
    the background score collapses (about 1.4) and the overall one with it (about 1.6)."""
    wav = load_audio(ljspeech_mini / "wavs" / "LJ001-0001.wav", SR)
    clean, noisy = dnsmos.score(wav, SR), dnsmos.score(add_noise(wav, 0.0), SR)
    for scores in (clean, noisy):
        assert set(scores) == {m.key for m in M.CLIP_METRICS}
        assert all(1.0 <= v <= 5.0 for v in scores.values()), scores
    assert clean["dnsmos_ovrl"] > 3.0 and clean["dnsmos_bak"] > 3.5, clean
    assert clean["dnsmos_ovrl"] > noisy["dnsmos_ovrl"] + 1.0, (clean, noisy)
    assert clean["dnsmos_bak"] > noisy["dnsmos_bak"] + 2.0, (clean, noisy)
    assert clean["dnsmos_sig"] > noisy["dnsmos_sig"] + 0.25, (clean, noisy)
    assert dnsmos.score(wav, SR) == clean and M.DnsmosScorer().score(wav, SR) == clean  # deterministic


def test_dnsmos_short_loud_empty_and_broken_clips(dnsmos):
    """A short clip fills one 9.01 s window by repetition; audio beyond [-1, 1] is clipped,
    not refused; an empty or non-finite clip scores NaN rather than stopping the run."""
    x = voiced(0.7, sr=M.METRIC_RATE)
    filled = M.fill_dnsmos_window(x)
    assert len(filled) == M.DNSMOS_WINDOW and np.array_equal(filled[len(x):2 * len(x)], x)
    assert M.fill_dnsmos_window(np.zeros(M.DNSMOS_WINDOW + 5, np.float32)).shape == (M.DNSMOS_WINDOW + 5,)
    loud = dnsmos.score(4.0 * x, M.METRIC_RATE)
    assert all(1.0 <= v <= 5.0 for v in loud.values()), loud
    for broken in (np.zeros(0, np.float32), np.full(SR, np.nan, np.float32)):
        assert all(math.isnan(v) for v in dnsmos.score(broken, SR).values())
    means = dnsmos.mean([np.zeros(0, np.float32), x], M.METRIC_RATE)  # NaN left out of the mean
    assert means == pytest.approx(dnsmos.score(x, M.METRIC_RATE))
