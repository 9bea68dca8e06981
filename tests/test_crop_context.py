"""Training crops carry context, so their mel frames equal those of the whole utterance."""
from __future__ import annotations

import numpy as np
import soundfile as sf
import torch

from audiodiff.audio import MelSpectrogram, load_audio
from audiodiff.data.crops import CropDataset
from audiodiff.data.sources import Clip
from audiodiff.recipe import Recipe

SR, HOP, SEGMENT = 22050, 256, 8192


def test_crop_mel_equals_whole_utterance_mel(tmp_path):
    t = np.arange(3 * SR) / SR
    wav = (0.3 * np.sin(2 * np.pi * (200 + 900 * t) * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    path = tmp_path / "chirp.wav"
    sf.write(path, wav, SR, subtype="FLOAT")
    mel = MelSpectrogram(Recipe().audio)
    whole = mel(torch.from_numpy(load_audio(path, SR)))
    context = 2  # frames: 2 x 256 >= n_fft / 2
    ds = CropDataset([Clip(path, SR, len(wav))], SR, SEGMENT, HOP, context=context * HOP)
    worst_with, worst_without = 0.0, 0.0
    for seed in range(6):
        crop = ds[(0, seed)][0]
        assert crop.shape == (SEGMENT + 2 * context * HOP,)
        start = int(np.random.default_rng(seed).integers((len(wav) - SEGMENT) // HOP + 1)) * HOP
        assert torch.equal(crop[context * HOP:context * HOP + SEGMENT], torch.from_numpy(wav[start:start + SEGMENT]))
        expected = whole[:, start // HOP:start // HOP + SEGMENT // HOP]
        worst_with = max(worst_with, float((mel(crop)[:, context:context + SEGMENT // HOP] - expected).abs().max()))
        inner = crop[context * HOP:context * HOP + SEGMENT]
        worst_without = max(worst_without, float((mel(inner) - expected).abs().max()))
    assert worst_with < 1e-4
    assert worst_without > 0.1  # what training saw before: reflect padding at the crop edges


def test_crop_at_clip_start_is_zero_padded_before_it(tmp_path):
    wav = np.full(SEGMENT // 2, 0.5, dtype=np.float32)  # shorter than a segment: the crop starts at 0
    path = tmp_path / "short.wav"
    sf.write(path, wav, SR, subtype="FLOAT")
    crop = CropDataset([Clip(path, SR, len(wav))], SR, SEGMENT, HOP, context=512)[(0, 0)][0]
    assert crop.shape == (SEGMENT + 1024,)
    assert float(crop[:512].abs().max()) == 0.0
    assert torch.allclose(crop[512:512 + len(wav)], torch.tensor(0.5))
    assert float(crop[512 + len(wav):].abs().max()) == 0.0
