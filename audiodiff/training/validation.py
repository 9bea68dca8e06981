"""Validation during training: what the EMA weights make, saved, logged and scored.

A vocoder resynthesises the held-out reference clip with the fast schedule and its
own sampler (no mel gain adjustment, so the number tracks the network) and is scored
by the log-mel distance to it; a generator makes `train.validate_seconds` of sound
with up to `GENERATOR_STEPS` steps of its training schedule (its fast schedule is a
vocoder's), scored by its mean spectral flatness (noise near 0.3-1, notes near 0.01). Both are saved as `samples/step-XXXXXXXX.wav` (the reference once, as
`samples/reference.wav`) and go to TensorBoard as audio and spectrogram.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from audiodiff.audio import save_audio
from audiodiff.evaluation.metrics import log_mel_distance, set_features
from audiodiff.inference import Generator, Vocoder
from audiodiff.recipe import Recipe
from audiodiff.training.run_log import RunLog

GENERATOR_STEPS = 50  # a generator's validation steps at most (the training schedule sub-sampled)


class Validator:
    """Validates a run of `recipe` in the run folder `out` on `device` (rank 0 only)."""

    def __init__(self, recipe: Recipe, out: Path, device: torch.device, log: RunLog):
        self.recipe, self.samples, self.device, self.log = recipe, out / "samples", device, log
        self.tb_has_reference = False  # the reference goes to TensorBoard once

    def __call__(self, ema: nn.Module, step: int, reference: torch.Tensor | None) -> dict:
        """Validate the EMA weights `ema` at `step` on `reference` [samples] (a vocoder's
        held-out clip; None: nothing to validate) -> {"val_log_mel_distance": d}, or {}
        for a generator or a vocoder without a clip."""
        audio, fast = self.recipe.audio, self.recipe.diffusion.fast_steps
        name = self.samples / f"step-{step:08d}.wav"
        if ema.conditional:
            if reference is None:
                return {}
            vocoder = Vocoder(ema, self.recipe, device=self.device)
            wav = vocoder.resynthesize(reference, steps=fast, seed=0, gain_adjust=False)
            save_audio(name, wav, audio.sample_rate)
            if not (self.samples / "reference.wav").exists():
                save_audio(self.samples / "reference.wav", reference, audio.sample_rate)
            result = {"val_log_mel_distance": log_mel_distance(reference, wav, audio)}
            self._reference_to_tensorboard(step, reference)
        else:
            generator = Generator(ema, self.recipe, device=self.device)
            steps = min(GENERATOR_STEPS, self.recipe.diffusion.steps)
            wav = generator.generate(self.recipe.train.validate_seconds, steps=steps, seed=0)[0]
            save_audio(name, wav, audio.sample_rate)
            result = {"val_flatness": float(set_features([wav], audio).flatness.mean())}
        self.log.tb.audio_and_spectrogram(step, "val/audio", "val/spectrogram", wav)
        self.log.tb.scalars(step, {f"val/{k.removeprefix('val_')}": v for k, v in result.items()})
        return result

    def _reference_to_tensorboard(self, step: int, reference: torch.Tensor) -> None:
        if self.log.tb.enabled and not self.tb_has_reference:
            self.log.tb.audio_and_spectrogram(step, "val/reference", "val/reference_spectrogram", reference)
            self.tb_has_reference = True
