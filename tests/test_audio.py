"""Audio I/O and the mel transform, checked against librosa and real files."""
from __future__ import annotations

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.audio import MelSpectrogram, check_mel, load_audio, load_mel, mel_value_range, save_audio
from audiodiff.errors import AudiodiffError, AudioError
from audiodiff.recipe import MEL_PRESETS, AudioConfig

from conftest import SR, chirp, sine

HIFIGAN = AudioConfig(preset="hifigan", **MEL_PRESETS["hifigan"])
DIFFWAVE = AudioConfig(preset="diffwave", **MEL_PRESETS["diffwave"])


def librosa_hifigan(y: np.ndarray) -> np.ndarray:
    """jik876/hifi-gan's mel, written with librosa: reflect pad (n_fft-hop)/2, center=False."""
    n_fft, hop = 1024, 256
    frames = -(-len(y) // hop)
    left = (n_fft - hop) // 2
    right = (frames - 1) * hop + n_fft - len(y) - left
    padded = np.pad(y.astype(np.float64), (left, right), mode="reflect")
    mel = librosa.feature.melspectrogram(y=padded, sr=22050, n_fft=n_fft, hop_length=hop, win_length=1024,
                                         window="hann", center=False, power=1.0, n_mels=80, fmin=0.0,
                                         fmax=8000.0, htk=False, norm="slaney")
    return np.log(np.maximum(mel, 1e-5))


def librosa_diffwave(y: np.ndarray) -> np.ndarray:
    """lmnt-com/diffwave's mel, written with librosa (center=True with reflect padding)."""
    mel = librosa.feature.melspectrogram(y=y.astype(np.float64), sr=22050, n_fft=1024, hop_length=256,
                                         win_length=1024, window="hann", center=True, pad_mode="reflect",
                                         power=1.0, n_mels=80, fmin=20.0, fmax=11025.0, htk=True, norm=None)
    window = librosa.filters.get_window("hann", 1024, fftbins=True)
    mel = mel / np.sqrt((window ** 2).sum())
    db = 20 * np.log10(np.maximum(mel, 1e-5)) - 20
    return np.clip((db + 100) / 100, 0.0, 1.0)


class Thing:
    """An arbitrary picklable object: torch.load(weights_only=True) must refuse it."""


# ------------------------------------------------------------------ mel vs librosa
def test_hifigan_mel_matches_librosa_on_synthetic_signal():
    y = chirp(1.0)[: 86 * 256]
    ours = MelSpectrogram(HIFIGAN)(torch.from_numpy(y)).numpy()
    ref = librosa_hifigan(y)
    assert ours.shape == ref.shape == (80, 86)  # samples / hop frames exactly
    np.testing.assert_allclose(ours, ref, atol=1e-3)
    assert ours.std() > 0.5  # not a trivially flat spectrogram


def test_hifigan_mel_matches_librosa_on_real_speech(ljspeech_mini):
    y = load_audio(ljspeech_mini / "wavs" / "LJ001-0002.wav", SR)[: 160 * 256]
    ours = MelSpectrogram(HIFIGAN)(torch.from_numpy(y)).numpy()
    ref = librosa_hifigan(y)
    assert ours.shape == (80, 160)
    np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_diffwave_mel_matches_librosa():
    y = chirp(1.0, amp=0.3)[: 86 * 256]
    ours = MelSpectrogram(DIFFWAVE)(torch.from_numpy(y)).numpy()
    ref = librosa_diffwave(y)
    assert ref.shape == (80, 87)  # librosa's center=True gives one frame more
    assert ours.shape == (80, 86)
    np.testing.assert_allclose(ours, ref[:, :-1], atol=1e-3)
    assert 0.0 <= ours.min() and ours.max() <= 1.0 and ours.max() > 0.5


def test_diffwave_mel_matches_librosa_on_real_speech(ljspeech_mini):
    y = load_audio(ljspeech_mini / "wavs" / "LJ001-0002.wav", SR)[: 160 * 256]
    ours = MelSpectrogram(DIFFWAVE)(torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(ours, librosa_diffwave(y)[:, :-1], atol=1e-3)


@pytest.mark.parametrize("config", [HIFIGAN, DIFFWAVE], ids=["hifigan", "diffwave"])
@pytest.mark.parametrize("samples, frames", [(256, 1), (257, 2), (1000, 4), (5000, 20), (22050, 87)])
def test_frame_count_is_ceil_samples_over_hop(config, samples, frames):
    mel = MelSpectrogram(config)
    assert mel.frames(samples) == frames
    y = torch.from_numpy(chirp(samples / SR)[:samples])
    assert mel(y).shape == (80, frames)


def test_very_short_input_still_gives_frames():
    # shorter than the padding: falls back to constant padding instead of failing
    out = MelSpectrogram(HIFIGAN)(torch.ones(100) * 0.1)
    assert out.shape == (80, 1) and torch.isfinite(out).all()


def test_batched_input_keeps_leading_dims():
    mel = MelSpectrogram(HIFIGAN)
    y = torch.from_numpy(np.stack([chirp(0.5, seed=i)[:5120] for i in range(6)])).reshape(2, 3, 5120)
    out = mel(y)
    assert out.shape == (2, 3, 80, 20)
    torch.testing.assert_close(out[1, 2], mel(y[1, 2]), atol=1e-5, rtol=0)


def test_hifigan_frame_i_describes_hop_i():
    """A burst in samples [k*hop, (k+1)*hop) is loudest in frame k (frames line up with the vocoder)."""
    hop = 256
    for k in (3, 10, 17):
        y = np.zeros(20 * hop, dtype=np.float32)
        y[k * hop:(k + 1) * hop] = np.random.default_rng(k).standard_normal(hop).astype(np.float32) * 0.5
        energy = MelSpectrogram(HIFIGAN)(torch.from_numpy(y)).exp().sum(0)
        assert int(energy.argmax()) == k


def test_compression_floor():
    out = MelSpectrogram(HIFIGAN)(torch.zeros(2048))
    assert torch.allclose(out, torch.full_like(out, float(np.log(1e-5))))
    out = MelSpectrogram(DIFFWAVE)(torch.zeros(2048))
    assert torch.equal(out, torch.zeros_like(out))


# ------------------------------------------------------------------ load / save
def test_load_stereo_44k_gives_mono_22k(tmp_path):
    sr_in = 44100
    t = np.arange(sr_in) / sr_in
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    right = np.zeros_like(left)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1).astype(np.float32), sr_in, subtype="FLOAT")
    wav = load_audio(path, 22050)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - 22050) <= 1
    # mono is the mean of the channels: a 0.25-amplitude 440 Hz sine
    middle = wav[1000:-1000]
    assert np.sqrt(np.mean(middle ** 2)) == pytest.approx(0.25 / np.sqrt(2), rel=0.01)
    spectrum = np.abs(np.fft.rfft(middle))
    peak_hz = np.argmax(spectrum) * 22050 / len(middle)
    assert abs(peak_hz - 440) < 2


def test_load_without_resampling_is_exact(tmp_path):
    y = chirp(0.3)
    path = tmp_path / "a.wav"
    sf.write(path, y, SR, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path, SR), y)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_save_load_round_trip(tmp_path, suffix):
    y = chirp(0.5, amp=0.8)
    path = save_audio(tmp_path / f"out{suffix}", y, SR)
    assert path == tmp_path / f"out{suffix}"
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (SR, 1, len(y), "PCM_16")
    back = load_audio(path, SR)
    assert back.shape == y.shape
    np.testing.assert_allclose(back, y, atol=1.5 / 32768)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{suffix}"]  # no temp files


def test_save_accepts_tensor_and_clips(tmp_path):
    y = torch.tensor([[0.0, 0.5, 2.0, -3.0]])
    save_audio(tmp_path / "t.wav", y, SR)
    back, sr = sf.read(tmp_path / "t.wav", dtype="float32")
    assert sr == SR
    np.testing.assert_allclose(back, [0.0, 0.5, 32767 / 32768, -1.0], atol=1 / 32768)


def test_save_rejects_other_formats(tmp_path):
    with pytest.raises(AudioError, match=r"\.wav or \.flac"):
        save_audio(tmp_path / "x.mp3", np.zeros(10), SR)
    assert list(tmp_path.iterdir()) == []


def test_failed_save_leaves_no_partial_or_temp_file(tmp_path):
    target = tmp_path / "out.wav"
    with pytest.raises(sf.LibsndfileError):
        save_audio(target, sine(0.1), 0)  # libsndfile refuses a sample rate of 0 mid-write
    assert list(tmp_path.iterdir()) == []
    # an existing file is left untouched by a failed overwrite
    save_audio(target, sine(0.1), SR)
    before = target.read_bytes()
    with pytest.raises(sf.LibsndfileError):
        save_audio(target, sine(0.2), 0)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]


def test_load_garbage_file_names_it(tmp_path):
    path = tmp_path / "garbage.wav"
    path.write_bytes(b"this is not audio at all" * 100)
    with pytest.raises(AudioError) as info:
        load_audio(path, SR)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_load_missing_and_empty(tmp_path):
    with pytest.raises(AudioError, match="not found") as info:
        load_audio(tmp_path / "absent.wav", SR)
    assert str(tmp_path / "absent.wav") in str(info.value)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(AudioError, match="empty"):
        load_audio(empty, SR)


# ------------------------------------------------------------------ check_mel / load_mel
def test_check_mel_accepts_a_real_mel():
    mel = MelSpectrogram(HIFIGAN)(torch.from_numpy(chirp(0.5)))
    check_mel(mel, HIFIGAN, "m")
    check_mel(mel.unsqueeze(0), HIFIGAN, "m")
    check_mel(MelSpectrogram(DIFFWAVE)(torch.from_numpy(chirp(0.5))), DIFFWAVE, "m")


def test_check_mel_wrong_band_count():
    with pytest.raises(AudioError) as info:
        check_mel(torch.zeros(64, 10) - 5, HIFIGAN, "my.npy")
    message = str(info.value)
    assert "my.npy" in message and "[64, 10]" in message and "80" in message
    with pytest.raises(AudioError):
        check_mel(torch.zeros(80) - 5, HIFIGAN, "m")  # 1-D
    with pytest.raises(AudioError):
        check_mel(torch.zeros(10, 80) - 5, HIFIGAN, "m")  # transposed


def test_check_mel_rejects_db_scale_for_hifigan():
    db = torch.linspace(-80, 0, 80 * 20).reshape(80, 20)
    with pytest.raises(AudioError) as info:
        check_mel(db, HIFIGAN, "db.npy")
    message = str(info.value)
    assert "db.npy" in message and "-80" in message and "outside" in message and "hifigan" in message


def test_check_mel_rejects_ln_scale_for_diffwave():
    ln = MelSpectrogram(HIFIGAN)(torch.from_numpy(chirp(0.5)))
    with pytest.raises(AudioError, match="outside"):
        check_mel(ln, DIFFWAVE, "m")


def test_check_mel_rejects_nan_and_empty():
    mel = torch.zeros(80, 5) - 3
    mel[3, 2] = float("nan")
    with pytest.raises(AudioError, match="NaN"):
        check_mel(mel, HIFIGAN, "m")
    with pytest.raises(AudioError, match="no frames"):
        check_mel(torch.zeros(80, 0), HIFIGAN, "m")


def test_mel_value_range_covers_the_floor():
    low, high = mel_value_range(HIFIGAN)
    assert low < np.log(1e-5) < high
    low, high = mel_value_range(DIFFWAVE)
    assert low < 0 and high > 1


def test_load_mel_npy_and_pt(tmp_path):
    mel = torch.randn(80, 33, generator=torch.Generator().manual_seed(1)) - 4
    np.save(tmp_path / "m.npy", mel.numpy().astype(np.float64))
    torch.save(mel.unsqueeze(0), tmp_path / "m.pt")
    a = load_mel(tmp_path / "m.npy")
    b = load_mel(tmp_path / "m.pt")
    assert a.dtype == torch.float32 and a.shape == (80, 33)
    assert b.shape == (80, 33)  # leading 1 dropped
    torch.testing.assert_close(a, mel)
    torch.testing.assert_close(b, mel)


def test_load_mel_errors_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        load_mel(tmp_path / "absent.npy")
    garbage = tmp_path / "g.npy"
    garbage.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(AudioError) as info:
        load_mel(garbage)
    assert str(garbage) in str(info.value)
    np.save(tmp_path / "v.npy", np.zeros(80, dtype=np.float32))
    with pytest.raises(AudioError, match=r"shape \[80\]"):
        load_mel(tmp_path / "v.npy")
    torch.save({"mel": torch.zeros(80, 3)}, tmp_path / "d.pt")
    with pytest.raises(AudioError, match="expected a tensor"):
        load_mel(tmp_path / "d.pt")
    obj = tmp_path / "obj.pt"
    torch.save(Thing(), obj)
    with pytest.raises(AudioError, match=str(obj).replace("\\", r"\\")):
        load_mel(obj)


def test_audio_errors_are_audiodiff_errors():
    assert issubclass(AudioError, AudiodiffError)
