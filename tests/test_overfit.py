"""The model learns: a small vocoder trained on one real speech clip resynthesises it
far better than noise or silence would (the slowest test: about a minute on 2 cores).

Measured (CPU, 1 thread, seed 0): 1000 steps in about 50 s; training loss 0.46 -> 0.18;
log-mel distance of the 6-step vocoded clip 1.69, white noise of the clip's RMS 2.38,
silence 6.62. Before the conditioner was initialised as linear interpolation and fed a
normalised mel, the output did not depend on the mel at all (quiet/loud ratio 1.00).
"""
from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from rich.console import Console

from audiodiff.audio import load_audio, save_audio
from audiodiff.evaluation.metrics import log_mel_distance
from audiodiff.inference import Vocoder
from audiodiff.recipe import Recipe, load_recipe
from audiodiff.training import TrainOptions, Trainer

from conftest import SR, TINY

CLIP = "LJ001-0002.wav"            # "in being comparatively modern." (1.9 s)
START, FRAMES = int(0.3 * SR), 86  # one second of it: 86 frames x 256 samples
STEPS = 1000
SEEDS = (0, 1)                     # sampling seeds; distances are averaged over them


@dataclass
class Overfit:
    recipe: Recipe
    clip: torch.Tensor
    vocoder: Vocoder
    loss: dict[int, float]
    seconds: float

    def vocode_rms(self, audio: torch.Tensor) -> float:
        """Mean RMS of the clips vocoded from the mel of `audio`."""
        mel = self.vocoder.mel(audio)
        return sum(float(self.vocoder.vocode(mel, seed=s, gain_adjust=False, refine=0).pow(2).mean().sqrt()) for s in SEEDS) / len(SEEDS)


@pytest.fixture(scope="module")
def overfit(tmp_path_factory, ljspeech_mini: Path) -> Overfit:
    """The tiny recipe's model trained for STEPS steps on one second of one real clip."""
    root = tmp_path_factory.mktemp("overfit")
    wav = load_audio(ljspeech_mini / "wavs" / CLIP, SR)
    save_audio(root / "data" / "clip.wav", wav[START:START + FRAMES * 256], SR)
    clip = torch.from_numpy(load_audio(root / "data" / "clip.wav", SR))  # what training reads (16-bit)
    recipe = load_recipe(TINY, [
        f"data.root='{(root / 'data').as_posix()}'", "data.source='folder'", "data.validation_count=0",
        f"train.max_steps={STEPS}", "train.batch_size=4", "train.segment=2048", "train.learning_rate=3e-3",
        "train.log_every=50", "train.checkpoint_every=100000", "train.validate_every=100000",
        "train.num_workers=0", "train.seed=0"])
    started = time.perf_counter()
    last = Trainer(recipe, root / "run", TrainOptions("cpu", Console(file=io.StringIO()), progress=False)).run()
    seconds = time.perf_counter() - started
    records = [json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().splitlines()]
    loss = {r["step"]: r["loss"] for r in records if "loss" in r}
    return Overfit(recipe, clip, Vocoder.from_checkpoint(last), loss, seconds)


@pytest.mark.slow
def test_overfit_one_clip(overfit):
    clip, vocoder = overfit.clip, overfit.vocoder
    assert clip.shape == (FRAMES * 256,)
    mel = vocoder.mel(clip)
    vocoded = [vocoder.vocode(mel, steps=6, seed=seed, gain_adjust=False, refine=0) for seed in SEEDS]
    assert all(v.shape == clip.shape for v in vocoded)
    d_vocoded = sum(log_mel_distance(clip, v, overfit.recipe.audio) for v in vocoded) / len(vocoded)
    rms = clip.pow(2).mean().sqrt()
    noise = torch.randn(clip.shape, generator=torch.Generator().manual_seed(0)) * rms
    d_noise = log_mel_distance(clip, noise, overfit.recipe.audio)
    d_silence = log_mel_distance(clip, torch.zeros_like(clip), overfit.recipe.audio)
    print(f"\noverfit: {STEPS} steps in {overfit.seconds:.0f} s; loss {overfit.loss[50]:.3f} -> "
          f"{overfit.loss[STEPS]:.3f}; log-mel distance vocoded {d_vocoded:.3f}, white noise {d_noise:.3f}, "
          f"silence {d_silence:.3f}")

    assert overfit.loss[STEPS] < 0.5 * overfit.loss[50]
    assert d_vocoded < 0.8 * d_noise
    assert d_vocoded < 0.3 * d_silence
    # speech-like in level: neither near-silent nor a clipped mess
    out_rms = sum(float(v.pow(2).mean().sqrt()) for v in vocoded) / len(vocoded)
    assert 0.25 * float(rms) < out_rms < 2.0 * float(rms)


@pytest.mark.slow
def test_overfit_output_follows_the_mel(overfit):
    """The same clip 17 dB quieter must give a clearly quieter vocoded output."""
    loud = overfit.vocode_rms(overfit.clip)
    quiet = overfit.vocode_rms(overfit.clip * 0.135)  # ln-mel lowered by 2
    print(f"\nvocoded RMS: clip {loud:.4f}, clip 17 dB quieter {quiet:.4f} (ratio {quiet / loud:.2f})")
    assert quiet < 0.8 * loud
