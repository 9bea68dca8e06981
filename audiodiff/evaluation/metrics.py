"""Distances between a reference waveform and a generated one, and between sets of clips.

Paired metrics (a vocoded signal against the reference it was made from, time-aligned):

| key | what | best |
|---|---|---|
| `log_mel` | mean L1 of ln mel magnitudes (the model's mel settings) | 0 |
| `mr_stft` | multi-resolution STFT distance: spectral convergence + log-magnitude L1, three resolutions (Parallel WaveGAN's) | 0 |
| `mcd_db` | mel-cepstral distortion in dB: c1..c24 of the DCT of ln mel magnitude, every frame | 0 |
| `pesq_wb` | PESQ wideband (ITU-T P.862.2) at 16 kHz, package `pesq` | 4.64 |
| `stoi` | short-time objective intelligibility at 16 kHz, package `pystoi` | 1 |
| `f0_rmse_cents` | F0 RMSE in cents over frames voiced in both (librosa's pYIN, 60-500 Hz) | 0 |
| `vuv_error` | fraction of frames whose voiced/unvoiced decision differs | 0 |

`PairScorer` computes the reference's side once (its pitch track, its 16 kHz copy) and
scores any number of estimates against it. PESQ and STOI come from the optional `eval`
extra; `require_eval_extra` names what is missing.

Single-clip metrics (non-intrusive: one waveform, no reference; `CLIP_METRICS`):

| key | what | best |
|---|---|---|
| `dnsmos_sig` | DNSMOS P.835 speech quality, 1-5, at 16 kHz (Microsoft's ONNX models, packaged in `speechmos`) | 5 |
| `dnsmos_bak` | DNSMOS P.835 background-noise quality (how clean the background is), 1-5 | 5 |
| `dnsmos_ovrl` | DNSMOS P.835 overall quality, 1-5 | 5 |

`DnsmosScorer` loads the two ONNX sessions once and rates any number of clips.

Set statistics (unconditional models: generated clips against a reference set, no
downloaded model): distance between the mean ln-mel spectra, and 1-D Wasserstein
distances between the per-frame distributions of loudness (RMS in dBFS) and spectral
flatness.
"""
from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audiodiff.audio import ln_mel_transform, resample
from audiodiff.errors import AudiodiffError
from audiodiff.recipe import AudioConfig
from audiodiff.spectral import mr_stft_loss

EVAL_EXTRA_HINT = 'pip install "audiodiff[eval]"'
METRIC_RATE = 16000  # PESQ wideband, STOI and pitch are computed at 16 kHz
F0_MIN, F0_MAX = 60.0, 500.0  # speech: pYIN's cost grows with the range it searches
F0_FRAME, F0_HOP = 1024, 160  # at 16 kHz: 64 ms frames (>= 3 periods of 60 Hz), 10 ms hop
MCD_ORDER = 24


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    better: str  # "lower" or "higher"
    unit: str = ""


PAIR_METRICS = (
    Metric("log_mel", "log-mel L1", "lower"),
    Metric("mr_stft", "MR-STFT", "lower"),
    Metric("mcd_db", "MCD", "lower", "dB"),
    Metric("pesq_wb", "PESQ-WB", "higher"),
    Metric("stoi", "STOI", "higher"),
    Metric("f0_rmse_cents", "F0 RMSE", "lower", "cents"),
    Metric("vuv_error", "V/UV error", "lower"),
)

PAIR_KEYS = tuple(m.key for m in PAIR_METRICS)
PAIR_PACKAGES = {"pesq_wb": "pesq", "stoi": "pystoi"}  # the `eval` extra's package a paired metric needs


def pair_metric(key: str) -> Metric:
    """The paired metric named `key`; KeyError for any other name."""
    for metric in PAIR_METRICS:
        if metric.key == key:
            return metric
    raise KeyError(key)


CLIP_METRICS = (
    Metric("dnsmos_sig", "DNSMOS SIG", "higher"),
    Metric("dnsmos_bak", "DNSMOS BAK", "higher"),
    Metric("dnsmos_ovrl", "DNSMOS OVRL", "higher"),
)

SET_METRICS = (
    Metric("mean_log_mel_dist", "mean log-mel dist", "lower"),
    Metric("loudness_w1_db", "loudness W1", "lower", "dB"),
    Metric("flatness_w1", "flatness W1", "lower"),
    Metric("loudness_mean_db", "loudness mean", "info", "dBFS"),
    Metric("loudness_std_db", "loudness std", "info", "dB"),
    Metric("flatness_mean", "flatness mean", "info"),
)

EXTRA_PACKAGES = {"pesq": "PESQ", "pystoi": "STOI", "speechmos": "DNSMOS", "onnxruntime": "DNSMOS",
                  "requests": "DNSMOS: speechmos imports it", "matplotlib": "the report's plots"}
DNSMOS_PACKAGES = ("speechmos", "onnxruntime", "requests")
DNSMOS_WINDOW = 144160  # samples at 16 kHz: the 9.01 s the DNSMOS models rate at once


def format_value(value, key: str = "") -> str:
    """A score as the tables print it: '–' for missing, 1 decimal for cents, else 3 significant places."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if key == "f0_rmse_cents" or abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"


def missing_eval_packages(names: tuple[str, ...] = tuple(EXTRA_PACKAGES)) -> list[str]:
    """Which of the `eval` extra's packages cannot be imported."""
    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def require_eval_extra(names: tuple[str, ...] = tuple(EXTRA_PACKAGES)) -> None:
    """Raise AudiodiffError naming what to install if any of `names` is missing."""
    missing = missing_eval_packages(names)
    if missing:
        what = ", ".join(f"{m} (for {EXTRA_PACKAGES.get(m, m)})" for m in missing)
        raise AudiodiffError(f"evaluation needs optional packages that are not installed: {what}; "
                             f"install them with: {EVAL_EXTRA_HINT}")


def finite_mean(values) -> float:
    """Mean of the finite values (a clip with no speech has no PESQ; a skipped step no
    loss); NaN when there are none."""
    finite = [float(v) for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def _tensor(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, torch.Tensor) else x,
                           dtype=torch.float32).detach().cpu().reshape(-1)


def _trim(reference, estimate) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _tensor(reference), _tensor(estimate)
    n = min(a.shape[-1], b.shape[-1])
    return a[:n], b[:n]


def log_mel_distance(reference: torch.Tensor, estimate: torch.Tensor, config: AudioConfig) -> float:
    """Mean |ln mel(reference) - ln mel(estimate)| over bands and frames (lower is better).

    Uses the model's mel settings with natural-log compression whatever its preset, so
    the number reads the same for every recipe. Inputs [samples]; the longer is trimmed.
    """
    n = min(reference.shape[-1], estimate.shape[-1])
    mel = ln_mel_transform(config)
    with torch.no_grad():
        a = mel(torch.as_tensor(reference[..., :n], dtype=torch.float32).cpu())
        b = mel(torch.as_tensor(estimate[..., :n], dtype=torch.float32).cpu())
    return float((a - b).abs().mean())


def mr_stft_distance(reference, estimate) -> float:
    """Multi-resolution STFT distance (spectral.mr_stft_loss), lower is better; 0 for
    identical signals."""
    a, b = _trim(reference, estimate)
    with torch.no_grad():
        return float(mr_stft_loss(a, b))


def cepstrum_of_log_mel(log_mel: np.ndarray, order: int = MCD_ORDER) -> np.ndarray:
    """ln mel magnitude [n_mels, frames] -> mel-cepstra c0..c_order [frames, order + 1].

    SPTK's convention, ln|H| = c0 + 2 sum_m c_m cos(pi m (k + 1/2) / K): a DCT-II over
    the bands divided by 2K, so MCD below comes out in dB with the usual constant.
    """
    import scipy.fft

    log_mel = np.asarray(log_mel, dtype=np.float64)
    return (scipy.fft.dct(log_mel, type=2, axis=0) / (2 * log_mel.shape[0]))[:order + 1].T


def mel_cepstrum(wav, config: AudioConfig, order: int = MCD_ORDER) -> np.ndarray:
    """[frames, order + 1] mel-cepstra of a waveform, from its ln mel magnitude (model's settings)."""
    mel = ln_mel_transform(config)
    with torch.no_grad():
        return cepstrum_of_log_mel(mel(_tensor(wav)).numpy(), order)


def mcd_of_cepstra(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Mean over frames of 10/ln10 * sqrt(2 * sum_{m>=1} (c_m - c'_m)^2), in dB (c0, the level, left out)."""
    n = min(len(reference), len(estimate))
    diff = reference[:n, 1:] - estimate[:n, 1:]
    return float(np.mean(10.0 / math.log(10.0) * np.sqrt(2.0 * np.sum(diff ** 2, axis=1))))


def mel_cepstral_distortion(reference, estimate, config: AudioConfig, order: int = MCD_ORDER) -> float:
    """MCD in dB over c1..c_order, mean over every frame (no DTW: vocoded audio is aligned)."""
    a, b = _trim(reference, estimate)
    return mcd_of_cepstra(mel_cepstrum(a, config, order), mel_cepstrum(b, config, order))


def to_metric_rate(wav, sample_rate: int) -> np.ndarray:
    """float32 [samples] at METRIC_RATE (16 kHz)."""
    return resample(_tensor(wav).numpy(), sample_rate, METRIC_RATE)


def pesq_wb(reference_16k: np.ndarray, estimate_16k: np.ndarray) -> float:
    """PESQ wideband MOS-LQO (1.04 .. 4.64) of 16 kHz signals; NaN if PESQ finds no speech."""
    require_eval_extra(("pesq",))
    from pesq import pesq as _pesq

    n = min(len(reference_16k), len(estimate_16k))
    try:
        return float(_pesq(METRIC_RATE, np.asarray(reference_16k[:n], dtype=np.float64),
                           np.asarray(estimate_16k[:n], dtype=np.float64), "wb"))
    except Exception:  # noqa: BLE001 - NoUtterancesError, BufferTooShortError ...
        return float("nan")


def stoi_score(reference_16k: np.ndarray, estimate_16k: np.ndarray) -> float:
    """STOI (0..1, higher is better) of 16 kHz signals; NaN if the signal is too short or silent."""
    require_eval_extra(("pystoi",))
    import warnings

    from pystoi import stoi

    n = min(len(reference_16k), len(estimate_16k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = float(stoi(np.asarray(reference_16k[:n], dtype=np.float64),
                               np.asarray(estimate_16k[:n], dtype=np.float64), METRIC_RATE, extended=False))
        except Exception:  # noqa: BLE001
            return float("nan")
    return value


def pitch_track(wav_16k: np.ndarray, fmin: float = F0_MIN, fmax: float = F0_MAX) -> tuple[np.ndarray, np.ndarray]:
    """(f0 in Hz with NaN where unvoiced, voiced flags) per 10 ms frame, by librosa's pYIN."""
    import warnings

    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f0, voiced, _ = librosa.pyin(np.asarray(wav_16k, dtype=np.float32), fmin=fmin, fmax=fmax,
                                     sr=METRIC_RATE, frame_length=F0_FRAME, hop_length=F0_HOP)
    return f0, voiced.astype(bool)


def f0_errors(reference: tuple[np.ndarray, np.ndarray], estimate: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """(F0 RMSE in cents over frames voiced in both, voiced/unvoiced error rate) of two pitch tracks."""
    (fa, va), (fb, vb) = reference, estimate
    n = min(len(fa), len(fb))
    fa, va, fb, vb = fa[:n], va[:n], fb[:n], vb[:n]
    vuv = float(np.mean(va != vb)) if n else float("nan")
    both = va & vb & np.isfinite(fa) & np.isfinite(fb)
    if not both.any():
        return float("nan"), vuv
    cents = 1200.0 * np.log2(fb[both] / fa[both])
    return float(np.sqrt(np.mean(cents ** 2))), vuv


def f0_rmse_cents(reference, estimate, sample_rate: int) -> tuple[float, float]:
    """(F0 RMSE in cents, V/UV error rate) between two waveforms at `sample_rate`."""
    return f0_errors(pitch_track(to_metric_rate(reference, sample_rate)),
                     pitch_track(to_metric_rate(estimate, sample_rate)))


class PairScorer:
    """Scores estimates against one reference with the paired metrics (see PAIR_METRICS):
    every one, or only those named in `keys` (what `schedule search` ranks and guards by).

    The reference's side is computed once, and only where a metric needs it (its 16 kHz
    copy, its pitch track). Estimates are trimmed or zero-padded to the reference's
    length. Of the `eval` extra, only the packages the chosen metrics need are required.
    """

    def __init__(self, reference, sample_rate: int, config: AudioConfig, keys: Sequence[str] | None = None):
        self.keys = PAIR_KEYS if keys is None else tuple(pair_metric(k).key for k in keys)
        require_eval_extra(tuple(dict.fromkeys(PAIR_PACKAGES[k] for k in self.keys if k in PAIR_PACKAGES)))
        self.reference = _tensor(reference)
        self.sample_rate = sample_rate
        self.config = config
        at_16k = any(k in ("pesq_wb", "stoi", "f0_rmse_cents", "vuv_error") for k in self.keys)
        self.ref_16k = to_metric_rate(self.reference, sample_rate) if at_16k else None
        pitched = any(k in ("f0_rmse_cents", "vuv_error") for k in self.keys)
        self.ref_pitch = pitch_track(self.ref_16k) if pitched else None

    def fit(self, estimate) -> torch.Tensor:
        est = _tensor(estimate)
        n = self.reference.shape[-1]
        if est.shape[-1] >= n:
            return est[:n]
        return torch.nn.functional.pad(est, (0, n - est.shape[-1]))

    def score(self, estimate) -> dict[str, float]:
        """{key: score} for each of this scorer's metrics."""
        est = self.fit(estimate)
        est_16k = to_metric_rate(est, self.sample_rate) if self.ref_16k is not None else None
        out: dict[str, float] = {}
        for key in self.keys:
            if key == "log_mel":
                out[key] = log_mel_distance(self.reference, est, self.config)
            elif key == "mr_stft":
                out[key] = mr_stft_distance(self.reference, est)
            elif key == "mcd_db":
                out[key] = mel_cepstral_distortion(self.reference, est, self.config)
            elif key == "pesq_wb":
                out[key] = pesq_wb(self.ref_16k, est_16k)
            elif key == "stoi":
                out[key] = stoi_score(self.ref_16k, est_16k)
            elif key in ("f0_rmse_cents", "vuv_error") and key not in out:
                out["f0_rmse_cents"], out["vuv_error"] = f0_errors(self.ref_pitch, pitch_track(est_16k))
        return {key: out[key] for key in self.keys}


# ---- single-clip metrics (no reference) ----

def _dnsmos_model(threads: int):
    """speechmos's DNSMOS over its packaged (not personalised) models, with CPU sessions of
    `threads` intra-op threads: speechmos's own constructor takes ONNX Runtime's default,
    a thread per core, whatever `--threads` says."""
    import onnxruntime as ort
    from speechmos import dnsmos

    folder = Path(dnsmos.__file__).resolve().parent / "dnsmos_models"
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1

    def session(name: str):
        return ort.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])

    model = object.__new__(dnsmos.DNSMOS)  # the same object its __init__ makes, with these sessions
    model.primary_model_path = str(folder / "sig_bak_ovr.onnx")
    model.onnx_sess, model.p808_onnx_sess = session("sig_bak_ovr.onnx"), session("model_v8.onnx")
    return model


def fill_dnsmos_window(wav_16k: np.ndarray) -> np.ndarray:
    """A clip shorter than DNSMOS's 9.01 s window, repeated and cut to exactly one window.

    speechmos would double it until it is long enough and average every 1 s hop of the
    result: the same repeated sound, rated up to 7 times (a 0.5 s clip). Longer clips are
    returned as they are. [samples] -> [max(samples, DNSMOS_WINDOW)].
    """
    if len(wav_16k) >= DNSMOS_WINDOW:
        return wav_16k
    return np.tile(wav_16k, -(-DNSMOS_WINDOW // len(wav_16k)))[:DNSMOS_WINDOW]


class DnsmosScorer:
    """DNSMOS P.835 (Reddy et al., ICASSP 2022) of single clips: SIG, BAK and OVRL, 1-5,
    higher is better (see CLIP_METRICS). No reference is needed, so the reference clip
    itself, a baseline and a generated clip are rated alike.

    The ONNX sessions are made once (torch's intra-op thread count) and reused for every
    clip. Each clip is resampled to 16 kHz and clipped to [-1, 1] (what saving it as
    16-bit audio does); an empty or non-finite clip scores NaN.
    """

    def __init__(self, threads: int | None = None):
        require_eval_extra(DNSMOS_PACKAGES)
        self.model = _dnsmos_model(threads or torch.get_num_threads())

    def score(self, wav, sample_rate: int) -> dict[str, float]:
        """{dnsmos_sig, dnsmos_bak, dnsmos_ovrl} of one waveform [samples] at `sample_rate`."""
        x = _tensor(wav)
        if x.numel() == 0 or not bool(torch.isfinite(x).all()):
            return {m.key: float("nan") for m in CLIP_METRICS}
        x = np.clip(to_metric_rate(x, sample_rate), -1.0, 1.0)
        out = self.model(fill_dnsmos_window(x), METRIC_RATE, False)
        return {"dnsmos_sig": float(out["sig_mos"]), "dnsmos_bak": float(out["bak_mos"]),
                "dnsmos_ovrl": float(out["ovrl_mos"])}

    def mean(self, clips, sample_rate: int) -> dict[str, float]:
        """Per-key mean over `clips` (an iterable of [samples] waveforms) of finite scores."""
        scores = [self.score(c, sample_rate) for c in clips]
        return {m.key: finite_mean(s[m.key] for s in scores) for m in CLIP_METRICS}


# ---- set statistics (unconditional generation) ----

LOUDNESS_FRAME, LOUDNESS_HOP = 2048, 512


@dataclass
class SetFeatures:
    """Per-frame features of a set of clips, pooled over its clips."""
    mean_log_mel: np.ndarray  # [n_mels]: mean over every frame of ln mel magnitude
    loudness_db: np.ndarray   # [frames]: RMS in dBFS (floor -100)
    flatness: np.ndarray      # [frames]: spectral flatness in [0, 1]
    clips: int


def set_features(clips, config: AudioConfig) -> SetFeatures:
    """Pool the features of `clips` (an iterable of [samples] arrays at config.sample_rate)."""
    import librosa

    mel = ln_mel_transform(config)
    mel_sum, frames, loud, flat, count = None, 0, [], [], 0
    for clip in clips:
        x = _tensor(clip)
        with torch.no_grad():
            m = mel(x).numpy().astype(np.float64)
        mel_sum = m.sum(axis=1) if mel_sum is None else mel_sum + m.sum(axis=1)
        frames += m.shape[1]
        y = x.numpy()
        rms = librosa.feature.rms(y=y, frame_length=LOUDNESS_FRAME, hop_length=LOUDNESS_HOP)[0]
        loud.append(20 * np.log10(np.maximum(rms, 1e-5)))
        flat.append(librosa.feature.spectral_flatness(y=y, n_fft=LOUDNESS_FRAME, hop_length=LOUDNESS_HOP)[0])
        count += 1
    if count == 0:
        raise AudiodiffError("no clips to compute statistics of")
    return SetFeatures(mel_sum / frames, np.concatenate(loud), np.concatenate(flat), count)


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    """1-D Wasserstein (earth mover's) distance between two samples."""
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)))


def set_distances(generated: SetFeatures, reference: SetFeatures) -> dict[str, float]:
    """Statistics of `generated` against `reference` (see SET_METRICS); 0 when they are equal."""
    return {
        "mean_log_mel_dist": float(np.mean(np.abs(generated.mean_log_mel - reference.mean_log_mel))),
        "loudness_w1_db": wasserstein_1d(generated.loudness_db, reference.loudness_db),
        "flatness_w1": wasserstein_1d(generated.flatness, reference.flatness),
        "loudness_mean_db": float(np.mean(generated.loudness_db)),
        "loudness_std_db": float(np.std(generated.loudness_db)),
        "flatness_mean": float(np.mean(generated.flatness)),
    }
