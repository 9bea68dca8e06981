"""Recipes: the typed, validated settings of a run.

A recipe is a TOML file with five sections, `[audio] [model] [diffusion] [train]
[data]`, each mapped onto a frozen dataclass below. Loading is strict: an unknown
section or key, a value of the wrong type or out of range fails with one line that
names the file and the key. Everything downstream (mel transform, schedule, network,
trainer, data) reads its settings from the one `Recipe` object, and checkpoints
carry it as a plain dict (`Recipe.to_dict` / `Recipe.from_dict`).

`[audio]` may name a mel preset (`preset = "hifigan"`); its values are the defaults
of that section and any key written beside it overrides them.

The shipped recipes live in `audiodiff/recipes/` as package data, so a recipe argument
is a name (`tiny`, `kathleen`) or a path (`resolve_recipe`); `shipped_recipes` describes
them for `audiodiff recipes`.
"""
from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiodiff.errors import RecipeError

MEL_PRESETS: dict[str, dict[str, Any]] = {
    # HiFi-GAN / Tacotron 2 convention, what most TTS acoustic models emit:
    # jik876/hifi-gan meldataset.py (reflect pad (n_fft-hop)/2, center=False,
    # slaney mel filters, magnitude, natural log of max(x, 1e-5)).
    "hifigan": dict(sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024,
                    n_mels=80, fmin=0.0, fmax=8000.0, center=False, normalized=False,
                    mel_htk=False, mel_norm="slaney", compression="ln"),
    # lmnt-com/diffwave preprocess.py: torchaudio MelSpectrogram (center=True,
    # htk mel scale, no filter normalisation, window-normalised magnitude),
    # then 20*log10(max(x, 1e-5)) - 20 mapped from [-100, 0] dB onto [0, 1].
    "diffwave": dict(sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024,
                     n_mels=80, fmin=20.0, fmax=11025.0, center=True, normalized=True,
                     mel_htk=True, mel_norm="none", compression="db_unit"),
}

#: lmnt's DiffWave fast inference schedule (betas), used for 6-step sampling.
LMNT_FAST_BETAS = (1e-4, 1e-3, 1e-2, 5e-2, 0.2, 0.5)


@dataclass(frozen=True)
class AudioConfig:
    """Sample rate and mel spectrogram convention (see `MEL_PRESETS`)."""
    preset: str = "hifigan"
    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    center: bool = False
    normalized: bool = False
    mel_htk: bool = False
    mel_norm: str = "slaney"
    compression: str = "ln"

    def validate(self, where: str) -> None:
        _check(self.preset in MEL_PRESETS or self.preset == "custom", where, "audio.preset",
               f"unknown preset {self.preset!r} (known: {', '.join(MEL_PRESETS)}, custom)")
        for key in ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels"):
            _check(getattr(self, key) > 0, where, f"audio.{key}", "must be positive")
        _check(self.win_length <= self.n_fft, where, "audio.win_length", "must be <= n_fft")
        _check(0 <= self.fmin < self.fmax <= self.sample_rate / 2, where, "audio.fmax",
               "need 0 <= fmin < fmax <= sample_rate / 2")
        _check(self.mel_norm in ("slaney", "none"), where, "audio.mel_norm", "must be 'slaney' or 'none'")
        _check(self.compression in ("ln", "db_unit"), where, "audio.compression",
               "must be 'ln' or 'db_unit'")
        _check(all(f <= 16 for f in prime_factors(self.hop_length)), where, "audio.hop_length",
               f"{self.hop_length} has a prime factor above 16; the conditioner upsamples in small strides")


#: Denoiser network families (audiodiff/networks: one module each, found by this name).
NETWORK_FAMILIES = ("diffwave", "frames")
#: What a network's raw output estimates: the noise, the clean signal, or v (see targets.py).
TARGETS = ("eps", "x0", "v")


@dataclass(frozen=True)
class ModelConfig:
    """The denoiser network: its family and size.

    `family` "diffwave" (sample level, Kong et al. 2021; base: 30 layers, 64 channels,
    cycle 10) reads the `residual_*`, `kernel_size` and `dilation_cycle` keys; "frames"
    (frame level: ConvNeXt blocks over STFT frames with an inverse-STFT head, see
    networks/frames.py) reads `channels`, `blocks`, `expansion` and `block_kernel`.
    `target` is what the network's raw output estimates ("eps" the noise, "x0" the
    clean signal, "v"); every network hands samplers a noise estimate, and the
    training loss is taken on the target. DiffWave predicts "eps" only.
    `input_mask` (frames, target "x0"): the head also predicts a gain in [0, 1] per STFT
    bin and frame that passes the noisy input, divided by its signal level, into the
    clean estimate beside the generated spectrum (a learned per-bin skip, like a Wiener
    gain), so the network can keep what the input already holds at low noise.
    """
    family: str = "diffwave"
    conditional: bool = True
    target: str = "eps"
    residual_layers: int = 30
    residual_channels: int = 64
    kernel_size: int = 3
    dilation_cycle: int = 10
    channels: int = 256
    blocks: int = 8
    expansion: int = 3
    block_kernel: int = 7
    input_mask: bool = False

    def describe(self) -> str:
        """The network's size in words, by family: '12 x 32 DiffWave, dilation cycle 10'."""
        if self.family == "frames":
            return (f"frames: {self.blocks} ConvNeXt blocks x {self.channels} channels, MLP x{self.expansion}, "
                    f"kernel {self.block_kernel}, target {self.target}"
                    + (", input mask" if self.input_mask else ""))
        return (f"DiffWave: {self.residual_layers} layers x {self.residual_channels} channels, "
                f"dilation cycle {self.dilation_cycle}")

    def validate(self, where: str) -> None:
        _check(self.family in NETWORK_FAMILIES, where, "model.family",
               f"must be one of {', '.join(repr(f) for f in NETWORK_FAMILIES)}, got {self.family!r}")
        _check(self.target in TARGETS, where, "model.target",
               f"must be one of {', '.join(repr(t) for t in TARGETS)}, got {self.target!r}")
        _check(self.family != "diffwave" or self.target == "eps", where, "model.target",
               "must be 'eps' for the diffwave family (it predicts the noise)")
        _check(not self.input_mask or (self.family == "frames" and self.target == "x0"), where,
               "model.input_mask", "needs model.family = 'frames' and model.target = 'x0'")
        for key in ("residual_layers", "residual_channels", "dilation_cycle", "channels", "blocks", "expansion"):
            _check(getattr(self, key) > 0, where, f"model.{key}", "must be positive")
        _check(self.kernel_size % 2 == 1 and self.kernel_size > 1, where, "model.kernel_size",
               "must be an odd number >= 3")
        _check(self.block_kernel % 2 == 1 and self.block_kernel > 1, where, "model.block_kernel",
               "must be an odd number >= 3")


@dataclass(frozen=True)
class DiffusionConfig:
    """Training noise schedule, the default fast inference schedule, and the noise prior.

    `prior` "standard" is unit white noise; "energy" (vocoders only) is PriorGrad's
    prior: noise scaled per mel frame to the frame's energy over `prior_reference`,
    clamped to [`prior_min`, 1] (see prior.py).
    `data_scale` (generators only): training multiplies the clean audio by it before
    noising it, and sampling divides what it makes by it. Audio at an RMS of about 0.1
    against unit noise spends most of a DiffWave schedule below 0 dB SNR, where a
    network learns little; scaling the data towards unit spread moves the schedule's
    levels onto the signal (EDM's sigma_data, as a recipe key). 1: none.
    """
    schedule: str = "linear"
    steps: int = 50
    beta_start: float = 1e-4
    beta_end: float = 0.05
    fast_betas: tuple[float, ...] = LMNT_FAST_BETAS
    prior: str = "standard"
    prior_min: float = 0.1
    prior_reference: float = 0.0
    data_scale: float = 1.0

    @property
    def fast_steps(self) -> int:
        """Network evaluations of the recipe's fast schedule, `len(fast_betas)`: a vocoder's
        default step count and training validation's, where that count samples exactly
        `fast_betas` (diffusion.inference_schedule)."""
        return len(self.fast_betas)

    def validate(self, where: str) -> None:
        _check(self.schedule in ("linear", "quadratic", "cosine"), where, "diffusion.schedule",
               "must be 'linear', 'quadratic' or 'cosine'")
        _check(self.steps >= 2, where, "diffusion.steps", "must be >= 2")
        _check(0 < self.beta_start < self.beta_end < 1, where, "diffusion.beta_end",
               "need 0 < beta_start < beta_end < 1")
        _check(len(self.fast_betas) >= 1 and all(0 < b < 1 for b in self.fast_betas), where,
               "diffusion.fast_betas", "must be a non-empty list of betas in (0, 1)")
        _check(self.prior in ("standard", "energy"), where, "diffusion.prior", "must be 'standard' or 'energy'")
        _check(0 < self.prior_min <= 1, where, "diffusion.prior_min", "must be in (0, 1]")
        _check(self.prior != "energy" or self.prior_reference > 0, where, "diffusion.prior_reference",
               "must be > 0 with prior = 'energy' (the 99th percentile of the data's frame energies)")
        _check(self.data_scale > 0, where, "diffusion.data_scale", "must be positive")


PRECISIONS = ("fp32", "bf16", "fp16")
LR_DECAYS = ("none", "linear", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, checkpointing and validation settings.

    `batch_size` is per process and per accumulation step: one optimiser step sees
    `batch_size x processes x grad_accum` crops (the global batch). The learning rate
    rises linearly over `warmup_steps`, stays until `decay_start` (0: no wait), then
    decays (`lr_decay`: none, linear, cosine) to `min_learning_rate` over `decay_steps`
    steps (0: until `max_steps`).
    `precision` is fp32, bf16 (autocast; CUDA or CPU) or fp16 (autocast with a gradient
    scaler; CUDA only). A step whose loss or gradient is not finite is skipped; after
    `max_nonfinite` such steps in a row training stops. `tensorboard` writes TensorBoard
    events in the run folder when the package is installed. `stft_loss_weight` adds
    that multiple of the MR-STFT distance between each crop and the network's estimate
    of it to the noise loss (diffusion.diffusion_loss); 0 is DiffWave's loss alone.
    `infer_loss_weight` adds that multiple of InferGrad's infer loss (training/infer_loss.py):
    the MR-STFT distance between each crop and what `infer_steps` DDPM steps of the
    default schedule for that count make from its mel (with mel gain adjustment at
    every step if `infer_gain_adjust`), backpropagated through every step; vocoders
    only; 0 is off. `infer_betas`, when given (`infer_steps` of them), is that chain's
    schedule instead of the default one: fine-tuning a model on the schedule it ships
    with (a searched one; DDPM's chain is DDIM's with eta 1).
    """
    batch_size: int = 16
    segment: int = 15872
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    max_steps: int = 1_000_000
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    validate_every: int = 5000
    validate_seconds: float = 2.0
    log_every: int = 100
    num_workers: int = 2
    seed: int = 0
    precision: str = "fp32"
    grad_accum: int = 1
    warmup_steps: int = 0
    lr_decay: str = "none"
    decay_steps: int = 0
    decay_start: int = 0
    min_learning_rate: float = 0.0
    max_nonfinite: int = 20
    tensorboard: bool = True
    stft_loss_weight: float = 0.0
    infer_loss_weight: float = 0.0
    infer_steps: int = 6
    infer_gain_adjust: bool = False
    infer_betas: tuple[float, ...] = ()

    def validate(self, where: str) -> None:
        for key in ("batch_size", "segment", "max_steps", "checkpoint_every", "keep_checkpoints",
                    "validate_every", "log_every", "grad_accum", "max_nonfinite"):
            _check(getattr(self, key) > 0, where, f"train.{key}", "must be positive")
        _check(self.precision in PRECISIONS, where, "train.precision",
               f"must be one of {', '.join(repr(p) for p in PRECISIONS)}, got {self.precision!r}")
        _check(self.lr_decay in LR_DECAYS, where, "train.lr_decay",
               f"must be one of {', '.join(repr(d) for d in LR_DECAYS)}, got {self.lr_decay!r}")
        _check(self.warmup_steps >= 0, where, "train.warmup_steps", "must be >= 0")
        _check(self.decay_steps >= 0, where, "train.decay_steps", "must be >= 0 (0: decay until max_steps)")
        _check(self.decay_start >= 0, where, "train.decay_start", "must be >= 0 (0: decay right after warm-up)")
        _check(0 <= self.min_learning_rate <= self.learning_rate, where, "train.min_learning_rate",
               "must be in [0, learning_rate]")
        _check(self.learning_rate > 0, where, "train.learning_rate", "must be positive")
        _check(0 <= self.ema_decay < 1, where, "train.ema_decay", "must be in [0, 1)")
        _check(self.grad_clip > 0, where, "train.grad_clip", "must be positive")
        _check(self.num_workers >= 0, where, "train.num_workers", "must be >= 0")
        _check(self.validate_seconds > 0, where, "train.validate_seconds", "must be positive")
        _check(self.stft_loss_weight >= 0, where, "train.stft_loss_weight", "must be >= 0 (0: noise loss only)")
        _check(self.infer_loss_weight >= 0, where, "train.infer_loss_weight", "must be >= 0 (0: no infer loss)")
        _check(self.infer_steps > 0, where, "train.infer_steps", "must be positive")
        _check(all(0 < b < 1 for b in self.infer_betas), where, "train.infer_betas", "must be betas in (0, 1)")
        _check(not self.infer_betas or len(self.infer_betas) == self.infer_steps, where, "train.infer_betas",
               f"must hold train.infer_steps ({self.infer_steps}) betas, got {len(self.infer_betas)}")


DATA_SOURCES = ("folder", "ljspeech", "vctk", "maestro", "sc09")


@dataclass(frozen=True)
class DataConfig:
    """Where the training audio is, how it is laid out, and what to do with bad files.

    `source` names the layout (see audiodiff/data/sources.py). `validation_count` clips
    are held out at random, except for sources with a split of their own (maestro,
    sc09), which use it. Clips shorter than `train.segment` are zero-padded, or
    skipped if `skip_short`. Unreadable, empty, NaN-filled or silent files are skipped;
    if more than `max_bad_fraction` of the files are, training refuses to start.
    `cache_dir`, if set, holds resampled copies written by `audiodiff data check
    --write-cache`; training reads them instead of resampling on the fly.
    """
    source: str = "folder"
    root: str = ""
    validation_count: int = 4
    min_seconds: float = 0.1
    skip_short: bool = False
    max_bad_fraction: float = 0.1
    cache_dir: str = ""

    def validate(self, where: str) -> None:
        _check(self.source in DATA_SOURCES, where, "data.source",
               f"must be one of {', '.join(repr(s) for s in DATA_SOURCES)}")
        _check(self.root != "", where, "data.root", "is required (the folder holding the data set)")
        _check(self.validation_count >= 0, where, "data.validation_count", "must be >= 0")
        _check(self.min_seconds >= 0, where, "data.min_seconds", "must be >= 0")
        _check(0 <= self.max_bad_fraction <= 1, where, "data.max_bad_fraction", "must be in [0, 1]")


@dataclass(frozen=True)
class Recipe:
    """All settings of a run. Build it with `load_recipe` or `Recipe.from_dict`."""
    audio: AudioConfig = field(default_factory=AudioConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (lists for tuples), safe to store in a checkpoint."""
        out = dataclasses.asdict(self)
        out["diffusion"]["fast_betas"] = list(self.diffusion.fast_betas)
        out["train"]["infer_betas"] = list(self.train.infer_betas)
        return out

    @classmethod
    def from_dict(cls, table: dict[str, Any], where: str = "<recipe>") -> Recipe:
        """Validate a nested dict (as read from TOML) into a Recipe."""
        return _recipe_from_table(table, where)


_SECTION_CLASSES = {"audio": AudioConfig, "model": ModelConfig, "diffusion": DiffusionConfig,
                    "train": TrainConfig, "data": DataConfig}


#: Where the shipped recipes are: `<name>.toml` each.
SHIPPED_DIR = Path(__file__).parent / "recipes"


def shipped_names() -> list[str]:
    """The names of the shipped recipes, sorted."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.toml"))


def resolve_recipe(name_or_path: str | Path) -> Path:
    """The recipe file a command-line argument means: an existing file, else a shipped name.

    A path that exists wins, so a local `tiny.toml` or a file named `tiny` is read as
    given; otherwise a bare name (no folder, no suffix) is looked up among the shipped
    recipes. Raises RecipeError naming the argument and the shipped names.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    is_name = path.name == text and not path.suffix
    if is_name and (SHIPPED_DIR / f"{text}.toml").is_file():
        return SHIPPED_DIR / f"{text}.toml"
    shipped = ", ".join(shipped_names())
    if is_name:
        raise RecipeError(f"{text}: recipe file not found, and no shipped recipe has that name "
                          f"(shipped: {shipped}; `audiodiff recipes` lists them)")
    raise RecipeError(f"{path}: recipe file not found (or give a shipped recipe's name: {shipped})")


@dataclass(frozen=True)
class RecipeInfo:
    """A shipped recipe as `audiodiff recipes` lists it.

    `summary` (what it trains) and `time` (rough training time on a CPU and on one GPU)
    are the file's first comment line and its `# time:` line; `data_source` and
    `data_root` are its [data] section, the data it expects (a relative root is read
    from the current folder).
    """
    name: str
    path: Path
    summary: str
    time: str
    data_source: str
    data_root: str


def shipped_recipes() -> list[RecipeInfo]:
    """Describe every shipped recipe, sorted by name (each file is loaded and validated)."""
    return [_recipe_info(SHIPPED_DIR / f"{name}.toml") for name in shipped_names()]


def _recipe_info(path: Path) -> RecipeInfo:
    comments = [line[1:].strip() for line in path.read_text(encoding="utf-8").splitlines()
                if line.startswith("#")]
    summary = comments[0] if comments else "unknown"
    time = next((c.split(":", 1)[1].strip() for c in comments if c.startswith("time:")), "unknown")
    data = load_recipe(path).data
    return RecipeInfo(path.stem, path, summary, time, data.source, data.root)


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe (a TOML file, or a shipped recipe's name), apply `section.key=value`
    overrides, validate.

    Raises RecipeError (one line naming the file and key) on any problem.
    """
    path = resolve_recipe(path)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: not valid TOML ({exc})") from None
    for item in overrides:
        _apply_override(table, item, str(path))
    return _recipe_from_table(table, str(path))


def parse_override(item: str) -> tuple[str, str, Any]:
    """Split `section.key=value` into (section, key, value); value is parsed as TOML."""
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise RecipeError(f"--set {item!r}: expected section.key=value")
    name, raw = item.split("=", 1)
    section, key = name.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare string such as data.root=/some/path
    return section, key, value


def _apply_override(table: dict[str, Any], item: str, where: str) -> None:
    section, key, value = parse_override(item)
    if section not in _SECTION_CLASSES:
        raise RecipeError(f"--set {item!r}: unknown section [{section}]")
    table.setdefault(section, {})[key] = value


def _recipe_from_table(table: dict[str, Any], where: str) -> Recipe:
    unknown = sorted(set(table) - set(_SECTION_CLASSES))
    if unknown:
        raise RecipeError(f"{where}: unknown section [{unknown[0]}] (known: {', '.join(_SECTION_CLASSES)})")
    parts = {}
    for name, cls in _SECTION_CLASSES.items():
        section = table.get(name, {})
        if not isinstance(section, dict):
            raise RecipeError(f"{where}: [{name}] must be a table")
        if name == "audio":
            section = _with_preset(section, where)
        parts[name] = _build_section(cls, name, section, where)
        parts[name].validate(where)
    _check(parts["diffusion"].prior == "standard" or parts["model"].conditional, where, "diffusion.prior",
           "'energy' needs a mel: use it with model.conditional = true")
    _check(parts["diffusion"].data_scale == 1 or not parts["model"].conditional, where, "diffusion.data_scale",
           "is for generators: a vocoder's level comes from its mel (use model.conditional = false or 1)")
    _check(parts["train"].infer_loss_weight == 0 or parts["model"].conditional, where, "train.infer_loss_weight",
           "needs a mel to sample from: use it with model.conditional = true (or set it to 0)")
    return Recipe(**parts)


def _with_preset(section: dict[str, Any], where: str) -> dict[str, Any]:
    preset = section.get("preset", "hifigan")
    if preset == "custom":
        return dict(section)
    if preset not in MEL_PRESETS:
        raise RecipeError(f"{where}: audio.preset: unknown preset {preset!r} "
                          f"(known: {', '.join(MEL_PRESETS)}, custom)")
    return {"preset": preset, **MEL_PRESETS[preset], **section}


def _build_section(cls: type, name: str, section: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in section:
        if key not in known:
            raise RecipeError(f"{where}: unknown key {name}.{key} (known: {', '.join(sorted(known))})")
    values = {key: _coerce(section[key], hints[key], f"{name}.{key}", where) for key in section}
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    """Check `value` against a field's type; ints are accepted for floats."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        inner = typing.get_args(hint)[0]
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{where}: {key} must be a list, got {type(value).__name__}")
        return tuple(_coerce(v, inner, key, where) for v in value)
    if origin in (types.UnionType, typing.Union):
        raise AssertionError("recipe fields are not unions")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise RecipeError(f"{where}: {key} must be {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def _check(ok: bool, where: str, key: str, message: str) -> None:
    if not ok:
        raise RecipeError(f"{where}: {key} {message}")


def prime_factors(n: int) -> list[int]:
    """Prime factors of n in ascending order, with repeats (prime_factors(12) == [2, 2, 3])."""
    out, p = [], 2
    while n > 1 and p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out
