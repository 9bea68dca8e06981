"""The noise schedule, defined once, and the training loss.

A `Schedule` is a sequence of betas; from it follow alpha-bar and the continuous
noise level `sqrt(alpha_bar)` that the network is conditioned on. Training draws
noise levels uniformly between neighbouring schedule points (WaveGrad), so the
network learns a continuum of levels and any inference schedule can be used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from audiodiff.recipe import DiffusionConfig, Recipe
from audiodiff.spectral import mr_stft_loss
from audiodiff.targets import target_from_eps


@dataclass(frozen=True)
class Schedule:
    """Betas of a diffusion process, step 0 (least noise) first. All float64, [steps]."""
    betas: torch.Tensor

    def __post_init__(self) -> None:
        b = self.betas
        if b.dim() != 1 or len(b) == 0 or not bool(((b > 0) & (b < 1)).all()):
            raise ValueError("betas must be a non-empty 1-D sequence in (0, 1)")

    @classmethod
    def from_betas(cls, betas) -> Schedule:
        return cls(torch.as_tensor(betas, dtype=torch.float64).reshape(-1))

    @classmethod
    def from_noise_levels(cls, levels) -> Schedule:
        """Build from strictly decreasing sqrt(alpha_bar) values (step 0 first)."""
        ab = torch.as_tensor(levels, dtype=torch.float64) ** 2
        prev = torch.cat([ab.new_ones(1), ab[:-1]])
        return cls.from_betas(1 - ab / prev)

    def __len__(self) -> int:
        return len(self.betas)

    @property
    def alphas(self) -> torch.Tensor:
        return 1 - self.betas

    @property
    def alpha_bars(self) -> torch.Tensor:
        return torch.cumprod(self.alphas, 0)

    @property
    def noise_levels(self) -> torch.Tensor:
        """sqrt(alpha_bar) per step: what the network is conditioned on."""
        return self.alpha_bars.sqrt()


def make_betas(kind: str, steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Betas of a named schedule family: 'linear' (DiffWave), 'quadratic' (linear in
    sqrt(beta)), or 'cosine' (Nichol & Dhariwal, clipped to [beta_start, beta_end])."""
    if kind == "linear":
        return torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    if kind == "quadratic":
        return torch.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=torch.float64) ** 2
    if kind == "cosine":
        t = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
        f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        return (1 - f[1:] / f[:-1]).clamp(beta_start, beta_end)
    raise ValueError(f"unknown schedule {kind!r}")


def geometric_betas(first: float, last: float, steps: int) -> torch.Tensor:
    """[steps] float64 betas spaced evenly in log from `first` to `last` (one step: `last`):
    the default rule below the fast schedule's length, and schedule search's grid."""
    if steps == 1:
        return torch.tensor([float(last)], dtype=torch.float64)
    return torch.logspace(math.log10(first), math.log10(last), steps, dtype=torch.float64)


def training_schedule(config: DiffusionConfig) -> Schedule:
    """The schedule the network is trained on (DiffWave base: 50 linear betas 1e-4..0.05)."""
    return Schedule(make_betas(config.schedule, config.steps, config.beta_start, config.beta_end))


def inference_schedule(config: DiffusionConfig, steps: int) -> Schedule:
    """The default schedule for sampling with `steps` network evaluations.

    - steps == config.fast_steps (len(fast_betas), 6 by default): the recipe's fast
      schedule (lmnt's);
    - fewer: geometric betas between the fast schedule's ends;
    - more, up to the training length: the training schedule sub-sampled evenly in
      step index (alpha-bar kept at the chosen points);
    - the training length or more: the training schedule itself.
    """
    if steps < 1:
        raise ValueError("steps must be >= 1")
    train = training_schedule(config)
    fast = config.fast_betas
    if steps == config.fast_steps:
        return Schedule.from_betas(fast)
    if steps < config.fast_steps:
        return Schedule.from_betas(geometric_betas(fast[0], fast[-1], steps))
    if steps >= len(train):
        return train
    return subsampled(train, steps)


def subsampled(schedule: Schedule, steps: int) -> Schedule:
    """`steps` points of `schedule` evenly spaced in step index (first and last kept),
    with their alpha-bar (so their noise levels) unchanged."""
    idx = torch.linspace(0, len(schedule) - 1, min(steps, len(schedule))).round().long()
    return Schedule.from_noise_levels(schedule.noise_levels[idx])


def sample_noise_levels(schedule: Schedule, batch: int, generator: torch.Generator) -> torch.Tensor:
    """[batch] continuous noise levels: pick a step, then uniform between its level and
    the previous one (1.0 before step 0), as in WaveGrad."""
    levels = torch.cat([torch.ones(1, dtype=torch.float64), schedule.noise_levels])
    step = torch.randint(1, len(levels), (batch,), generator=generator)
    u = torch.rand(batch, generator=generator, dtype=torch.float64)
    return (levels[step] + u * (levels[step - 1] - levels[step])).float()


@dataclass(frozen=True)
class RowShare:
    """Rows [offset, offset + B) of draws made from `generator` for a batch of `total` rows.

    Training splits a global batch across processes and accumulation steps (see
    training/step.py); the loss (`diffusion_loss`) or a sampler (samplers.py) run on one
    share with a RowShare meets, row for row, the noise it would meet in the whole batch,
    so the split does not change the result.
    """
    generator: torch.Generator
    offset: int
    total: int

    @classmethod
    def of(cls, generator: torch.Generator | RowShare, rows: int) -> RowShare:
        """`generator` as a share: a plain generator is the share of all `rows` rows."""
        return generator if isinstance(generator, RowShare) else cls(generator, 0, rows)

    def rows(self, batch: int) -> slice:
        """This share's `batch` rows of a draw of [total, ...]."""
        return slice(self.offset, self.offset + batch)

    def randn(self, shape: torch.Size) -> torch.Tensor:
        """Standard normal draws of `shape` [B, ...]: this share's rows of [total, ...]."""
        whole = torch.randn((self.total, *shape[1:]), generator=self.generator, dtype=torch.float32)
        return whole[self.rows(shape[0])]


@dataclass(frozen=True)
class LossSpec:
    """What the training loss is: noise levels drawn from `schedule`'s continuum, L1 on
    the network's `target` ("eps", DiffWave's loss; "x0" the clean signal; "v": see
    targets.py), plus `stft_weight` times the MR-STFT distance of its clean estimate;
    the clean audio is multiplied by `data_scale` first (DiffusionConfig.data_scale)."""
    schedule: Schedule
    target: str = "eps"
    stft_weight: float = 0.0
    data_scale: float = 1.0

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> LossSpec:
        """The recipe's loss: its training schedule, model.target, train.stft_loss_weight,
        diffusion.data_scale."""
        return cls(training_schedule(recipe.diffusion), recipe.model.target, recipe.train.stft_loss_weight,
                   recipe.diffusion.data_scale)


def diffusion_loss(network: torch.nn.Module, audio: torch.Tensor, cond: torch.Tensor | None, spec: LossSpec,
                   generator: torch.Generator | RowShare, std: torch.Tensor | None = None) -> torch.Tensor:
    """L1 between the true and predicted `spec.target`, plus `spec.stft_weight` times the
    MR-STFT distance (spectral.py) between the clean audio and the network's estimate of
    it, x0 = (noisy - sqrt(1 - level^2) * predicted noise) / level.

    The sampler builds every step on that estimate (and gain adjustment reshapes it),
    so with only a few steps its spectral detail is what is heard; the noise loss
    alone, with its error magnified by 1 / level, leaves it smeared. 0 (the default):
    DiffWave's loss alone.

    `std` [B, 1, T] (PriorGrad's prior, see prior.py): the noise is N(0, std^2) and the
    error is weighed by 1/std; None is unit noise.

    audio [B, 1, T] clean; cond [B, n_mels, T] or None. Randomness comes from
    `generator` only (a CPU generator), so a seeded run repeats exactly.

    When `generator` is a RowShare, `audio` is rows [offset, offset + B) of a larger
    batch of `total` rows (one process's or one accumulation step's share of a global
    batch): noise levels and noise are drawn for all `total` rows and this share's rows
    are used, so however a batch is split, each crop meets the same noise as in the
    whole batch.
    """
    share = RowShare.of(generator, audio.shape[0])
    audio = audio * spec.data_scale
    level = sample_noise_levels(spec.schedule, share.total, share.generator)[share.rows(audio.shape[0])]
    level = level.to(audio.device)
    eps = share.randn(audio.shape).to(audio.device)
    if std is not None:
        eps = eps * std
    a = level.view(-1, 1, 1)
    noisy = a * audio + (1 - a ** 2).sqrt() * eps
    predicted = network(noisy, level, cond)
    if spec.target == "eps":
        error = (predicted - eps).abs()
        loss = (error if std is None else error / std).mean()
    else:
        truth = target_from_eps(eps, noisy, a, spec.target)
        loss = (target_from_eps(predicted, noisy, a, spec.target) - truth).abs().mean()
    if spec.stft_weight > 0:
        clean = target_from_eps(predicted, noisy, a, "x0")
        loss = loss + spec.stft_weight * mr_stft_loss(audio.squeeze(1), clean.squeeze(1)).mean()
    return loss
