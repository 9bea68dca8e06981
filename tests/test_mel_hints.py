"""Mels from other tools (issue 23, item 8): a transposed array, a log10 mel, a dB mel (and a
natural-log mel with a lower floor, a linear one) are each recognised, and the one-line error
says what it is and how to fix it; `audiodiff mel IN.wav -o mel.npy` writes the model's own
mel to compare with. Each case is built from a real mel (the checkpoint's own transform of
the shipped example clip, or of a synthetic clip) converted the way the other tool would."""
from __future__ import annotations

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.audio import MelSpectrogram, check_mel, load_audio, load_mel, save_mel
from audiodiff.errors import AudioError
from audiodiff.pretrained import DEFAULTS, example_path
from audiodiff.recipe import MEL_PRESETS, AudioConfig

from conftest import SR, chirp, sine

HIFIGAN = AudioConfig(preset="hifigan", **MEL_PRESETS["hifigan"])
DIFFWAVE = AudioConfig(preset="diffwave", **MEL_PRESETS["diffwave"])
LN10 = float(np.log(10.0))


def speech_and_silence() -> np.ndarray:
    """A synthetic clip with pauses: a chirp, digital silence, a sine (22.05 kHz)."""
    return np.concatenate([chirp(0.6, amp=0.4), np.zeros(SR // 4, np.float32), sine(0.4, 330.0, amp=0.3)])


@pytest.fixture(scope="module", params=["example", "synthetic"])
def ln_mel(request) -> torch.Tensor:
    """The checkpoint's own (hifigan, natural-log) mel [80, frames] of a real and a synthetic clip."""
    wav = load_audio(example_path(), SR) if request.param == "example" else speech_and_silence()
    return MelSpectrogram(HIFIGAN)(torch.from_numpy(wav))


def error_of(mel: torch.Tensor, config: AudioConfig = HIFIGAN, checkpoint: str | None = None) -> str:
    with pytest.raises(AudioError) as info:
        check_mel(mel, config, "tts.npy", checkpoint)
    message = str(info.value)
    assert message.startswith("tts.npy: ") and "\n" not in message
    return message


def test_the_models_own_mel_passes(ln_mel):
    check_mel(ln_mel, HIFIGAN, "own")
    check_mel(ln_mel.unsqueeze(0), HIFIGAN, "own")


def test_transposed(ln_mel):
    message = error_of(ln_mel.T.contiguous())
    assert f"[{ln_mel.shape[1]}, 80]" in message and "transposed" in message and "transpose it to [80, frames]" in message
    assert "audiodiff mel IN.wav -o mel.npy" in message
    assert "transposed" in error_of(ln_mel.T.unsqueeze(0))  # batched [1, frames, 80]


def test_log10(ln_mel):
    message = error_of(ln_mel / LN10)
    assert "log10 mel" in message and "multiply it by ln(10) = 2.3026" in message
    assert "audiodiff mel IN.wav -o mel.npy" in message


def test_log10_with_a_lower_floor(ln_mel):
    """ESPnet / ParallelWaveGAN: log10(max(x, 1e-10)); the silence sits at -10."""
    magnitude = torch.exp(ln_mel)
    magnitude[:, :3] = 0  # some digital silence
    message = error_of(torch.log10(torch.clamp(magnitude, min=1e-10)))
    assert "log10 mel with its floor at log10(1e-10) = -10" in message and "ln(10)" in message and "clamp" in message


@pytest.mark.parametrize("kind", ["20log10", "power_db"])
def test_decibels(ln_mel, kind):
    if kind == "20log10":  # 20*log10 of the magnitude: -100 dB at the floor
        db = ln_mel * (20.0 / LN10)
    else:  # librosa.power_to_db(magnitude ** 2): 10*log10, floor 1e-10, top_db 80 below the peak
        db = torch.from_numpy(librosa.power_to_db(torch.exp(ln_mel).numpy() ** 2, ref=1.0))
    message = error_of(db)
    assert "outside" in message and "decibels" in message
    assert "divide by 20 and multiply by ln(10)" in message and "audiodiff mel IN.wav -o mel.npy" in message
    converted = torch.clamp(db * (LN10 / 20.0), min=float(np.log(1e-5)))
    check_mel(converted, HIFIGAN, "fixed")  # the fix the message gives passes the check
    if kind == "20log10":  # and gives back the model's own mel (power_to_db's top_db cut the quietest)
        torch.testing.assert_close(converted, ln_mel, atol=2e-3, rtol=0)


def test_natural_log_with_a_lower_floor(ln_mel):
    """Vocos: log(max(x, 1e-7)); values below this scale's floor of -11.51."""
    magnitude = torch.exp(ln_mel)
    magnitude[:, :3] = 0
    message = error_of(torch.log(torch.clamp(magnitude, min=1e-7)))
    assert "lower floor" in message and "np.maximum(mel, np.log(1e-5))" in message


def test_linear(ln_mel):
    message = error_of(torch.exp(ln_mel))
    assert "linear (not log) mel" in message and "np.log(np.maximum(mel, 1e-5))" in message


def test_the_checkpoint_goes_into_the_compare_command(ln_mel):
    assert "`audiodiff mel IN.wav -o mel.npy -c runs/x/step-00001000.pt`" in error_of(
        ln_mel / LN10, checkpoint="runs/x/step-00001000.pt")


def test_diffwave_preset_hints():
    wav = torch.from_numpy(speech_and_silence())
    check_mel(MelSpectrogram(DIFFWAVE)(wav), DIFFWAVE, "own")
    ln = MelSpectrogram(HIFIGAN)(wav)
    assert "natural-log mel" in error_of(ln, DIFFWAVE)
    assert "decibels" in error_of(ln * (20.0 / LN10), DIFFWAVE)


@pytest.mark.parametrize("amp", [0.01, 0.1, 0.3, 0.9])
def test_no_false_alarm_on_noise_or_constant_mels(amp):
    """Stationary noise has a narrow range in any scale: its natural-log mel is taken as it is
    (so are the constant and random mels the other tests feed the vocoder)."""
    noise = (amp * np.random.default_rng(1).standard_normal(SR * 2)).clip(-1, 1).astype(np.float32)
    check_mel(MelSpectrogram(HIFIGAN)(torch.from_numpy(noise)), HIFIGAN, "noise")
    check_mel(torch.full((80, 8), -5.0), HIFIGAN, "constant")
    check_mel(torch.randn(2, 80, 40, generator=torch.Generator().manual_seed(0)) - 4, HIFIGAN, "random")


# ------------------------------------------------------------------ the command line
def test_vocode_names_the_case_before_any_work(tmp_path, tiny_ckpt, run_main):
    wav = speech_and_silence()
    ln = MelSpectrogram(HIFIGAN)(torch.from_numpy(wav))
    np.save(tmp_path / "good.npy", ln.numpy())
    np.save(tmp_path / "log10.npy", (ln / LN10).numpy())
    torch.save(ln.T.unsqueeze(0).clone(), tmp_path / "frames_first.pt")
    out = tmp_path / "out"
    result = run_main("vocode", tmp_path / "good.npy", tmp_path / "log10.npy", "-c", tiny_ckpt, "--out-dir", out,
                      "--device", "cpu", "--steps", 2)
    line = check_one_line(result, tmp_path / "log10.npy", "log10 mel", "ln(10)", f"-o mel.npy -c {tiny_ckpt}")
    assert "good.npy" not in result.stderr, "no input was vocoded before the bad one was found"
    assert not out.exists() or list(out.iterdir()) == []
    result = run_main("vocode", tmp_path / "frames_first.pt", "-c", tiny_ckpt, "-o", tmp_path / "x.wav", "--device", "cpu")
    check_one_line(result, tmp_path / "frames_first.pt", "transposed", "transpose it")
    assert not (tmp_path / "x.wav").exists()


def check_one_line(result, *words) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert str(word) in errors[0], (word, errors[0])
    return errors[0]


def test_mel_command_round_trip(tmp_path, tiny_ckpt, run_main):
    """`audiodiff mel` writes the checkpoint's own mel [n_mels, frames] as float32 .npy; it
    vocodes without error to frames x hop samples."""
    from audiodiff.inference import Vocoder

    wav = speech_and_silence()
    sf.write(tmp_path / "in.wav", wav, SR, subtype="FLOAT")
    result = run_main("mel", tmp_path / "in.wav", "-o", tmp_path / "mel.npy", "-c", tiny_ckpt)
    assert result.returncode == 0, result.stderr
    mel = np.load(tmp_path / "mel.npy")
    frames = -(-len(wav) // 256)
    assert mel.dtype == np.float32 and mel.shape == (80, frames)
    vocoder = Vocoder.from_checkpoint(tiny_ckpt, device="cpu")
    np.testing.assert_allclose(mel, vocoder.mel(wav).numpy(), atol=1e-5)
    result = run_main("vocode", tmp_path / "mel.npy", "-c", tiny_ckpt, "-o", tmp_path / "out.wav", "--steps", 2,
                      "--device", "cpu")
    assert result.returncode == 0, result.stderr
    out, sr = sf.read(tmp_path / "out.wav")
    assert sr == SR and len(out) == frames * 256
    # .pt too, and anything else is refused before any work
    assert run_main("mel", tmp_path / "in.wav", "-o", tmp_path / "mel.pt", "-c", tiny_ckpt).returncode == 0
    torch.testing.assert_close(load_mel(tmp_path / "mel.pt"), torch.from_numpy(mel))
    check_one_line(run_main("mel", tmp_path / "in.wav", "-o", tmp_path / "mel.txt", "-c", tiny_ckpt), "mel.txt", ".npy")
    check_one_line(run_main("mel", tmp_path / "absent.wav", "-o", tmp_path / "m2.npy", "-c", tiny_ckpt), "absent.wav")
    assert not (tmp_path / "mel.txt").exists() and not (tmp_path / "m2.npy").exists()


@pytest.mark.skipif(not DEFAULTS["vocoder"].is_file(), reason="no default vocoder is shipped")
def test_mel_command_defaults_to_the_shipped_vocoder(tmp_path, run_main):
    result = run_main("mel", example_path(), "-o", tmp_path / "example.npy")
    assert result.returncode == 0, result.stderr
    mel = load_mel(tmp_path / "example.npy")
    assert mel.shape == (80, -(-len(load_audio(example_path(), SR)) // 256))
    check_mel(mel, HIFIGAN, "example.npy")
    assert "preset hifigan" in result.stderr


def test_save_mel_refuses_other_suffixes(tmp_path):
    with pytest.raises(AudioError, match="npy"):
        save_mel(tmp_path / "m.csv", torch.zeros(80, 2))
