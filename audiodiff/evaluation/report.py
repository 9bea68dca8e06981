"""report.html for an `audiodiff eval` run: spectrograms, audio players, metric plots.

Everything the page shows lies beside it (img/*.png, audio/*.wav) and is linked by a
relative path, so the folder can be moved, zipped or served as it is. Plots are drawn
with matplotlib (part of the `eval` extra) on its non-interactive Agg backend.
"""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from audiodiff.atomic import atomic_path
from audiodiff.audio import DB_RANGE, load_audio, spectrogram_db
from audiodiff.evaluation.evaluate import BAND_GRIFFIN_LIM, GRIFFIN_LIM, HALVES, MODEL, NOISE, REFERENCE, EvalResult
from audiodiff.evaluation.metrics import PAIR_METRICS, format_value, require_eval_extra
from audiodiff.recipe import AudioConfig

CARD_METRICS = ("pesq_wb", "stoi", "mcd_db", "log_mel", "dnsmos_ovrl")
PAIRED = frozenset(m.key for m in PAIR_METRICS)  # not shown on the reference's card: trivially best there
MAX_CLIPS_SHOWN = 4  # unconditional: clips shown per system

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 24px; color: #1d1d1f; max-width: 1800px; }
h1 { font-size: 1.5em; margin-bottom: 4px; } h2 { font-size: 1.2em; margin-top: 32px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th { background: #f4f4f6; } td.name, th.name { text-align: left; }
tr.ref td { background: #f3faf3; } tr.floor td { background: #fdf3f2; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 12px; }
.row { display: grid; gap: 10px; overflow-x: auto; padding-bottom: 4px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px; background: #fff; }
.card h3 { font-size: 0.95em; margin: 0 0 4px 0; }
.card img { width: 100%; display: block; }
.card audio { width: 100%; margin-top: 4px; }
.card .scores { font-size: 0.8em; color: #444; margin-top: 2px; }
img.plot { max-width: 100%; }
.note { font-size: 0.85em; color: #555; }
"""


def _pyplot():
    require_eval_extra(("matplotlib",))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_fmt = format_value


def _spectrogram_db(path: Path, config: AudioConfig) -> np.ndarray:
    return spectrogram_db(load_audio(path, config.sample_rate), config)


def _save_spectrogram(plt, db: np.ndarray, target: Path, title: str | None, config: AudioConfig,
                      vmax: float) -> None:
    seconds = db.shape[1] * config.hop_length / config.sample_rate
    fig, ax = plt.subplots(figsize=(4.0, 2.2 if title else 2.0), dpi=100)
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=vmax - DB_RANGE, vmax=vmax,
              extent=(0, seconds, 0, db.shape[0]), interpolation="nearest")
    if title:
        ax.set_title(title, fontsize=9)
    ax.set_xlabel("seconds", fontsize=8)
    ax.set_ylabel("mel band", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout(pad=0.3)
    _savefig(fig, target)
    plt.close(fig)


def _savefig(fig, target: Path) -> None:
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")


def _metric_plot(plt, result: EvalResult, target: Path) -> bool:
    model = [m for m in result.means if m["system"] == MODEL]
    refs = [m for m in result.means if m["system"] != MODEL]
    metrics = [m for m in result.metrics if m.better != "info"]
    if not model:
        return False
    cols = min(4, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.6 * rows), dpi=100, squeeze=False)
    styles = {REFERENCE: ("tab:green", ":"), HALVES: ("tab:green", ":"), GRIFFIN_LIM: ("tab:red", "--"),
              BAND_GRIFFIN_LIM: ("tab:orange", "--"), NOISE: ("tab:red", "--")}
    steps = [m["steps"] for m in model]
    for ax, metric in zip(axes.flat, metrics):
        ys = [m[metric.key] if m.get(metric.key) is not None else np.nan for m in model]
        ax.plot(steps, ys, "o-", color="tab:blue", label="model")
        for ref in refs:
            if ref.get(metric.key) is not None:
                color, ls = styles.get(ref["system"], ("gray", "-."))
                ax.axhline(ref[metric.key], color=color, linestyle=ls, label=ref["label"])
        ax.set_xscale("log", base=2)
        ax.set_xticks(steps, [str(s) for s in steps])
        ax.minorticks_off()
        unit = f" ({metric.unit})" if metric.unit else ""
        ax.set_title(f"{metric.label}{unit}, {metric.better} is better", fontsize=9)
        ax.set_xlabel("steps", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    legend = {}  # every system once, though not every row has every metric
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=len(legend), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    _savefig(fig, target)
    plt.close(fig)
    return True


def _means_table(result: EvalResult) -> str:
    metrics = result.metrics
    head = "".join(f"<th>{html.escape(m.label)}{' (' + html.escape(m.unit) + ')' if m.unit else ''}"
                   f"{' ↓' if m.better == 'lower' else ' ↑' if m.better == 'higher' else ''}</th>" for m in metrics)
    count = "files" if result.kind == "vocoder" else "clips"
    out = [f"<table><tr><th class='name'>system</th><th>{count}</th>{head}<th>RTF</th></tr>"]
    for m in result.means:
        cls = "ref" if m["system"] in (REFERENCE, HALVES) else "floor" if m["system"] in (GRIFFIN_LIM, BAND_GRIFFIN_LIM, NOISE) else ""
        cells = "".join(f"<td>{_fmt(m.get(x.key), x.key)}</td>" for x in metrics)
        out.append(f"<tr class='{cls}'><td class='name'>{html.escape(m['label'])}</td><td>{m['files']}</td>"
                   f"{cells}<td>{_fmt(m.get('rtf'))}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _card(title: str, img: str, audio: str, scores: str = "") -> str:
    return (f"<div class='card'><h3>{html.escape(title)}</h3><img src='{html.escape(img)}' alt='{html.escape(title)}'>"
            f"<audio controls preload='metadata' src='{html.escape(audio)}'></audio>"
            + (f"<div class='scores'>{scores}</div>" if scores else "") + "</div>")


def write_report(result: EvalResult, config: AudioConfig | None = None) -> Path:
    """Draw the PNGs and write report.html into `result.out_dir`; returns its path."""
    plt = _pyplot()
    out = result.out_dir
    if config is None:
        from audiodiff.checkpoint import load_checkpoint

        config = load_checkpoint(result.meta["checkpoint"]).recipe.audio
    body = _summary(result)
    if _metric_plot(plt, result, out / "img" / "metrics.png"):
        body.append("<h2>Scores against step count</h2><img class='plot' src='img/metrics.png' alt='metrics vs steps'>")
    body += _vocoder_cards(plt, result, config) if result.kind == "vocoder" else _generator_cards(plt, result, config)
    name = html.escape(Path(result.meta["checkpoint"]).name)
    page = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>audiodiff eval: {name}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    result.report_path = out / "report.html"
    with atomic_path(result.report_path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return result.report_path


def _summary(result: EvalResult) -> list[str]:
    """The page's head: the run's information, the means table and what its rows mean."""
    meta = result.meta
    body = [f"<h1>audiodiff eval: {html.escape(Path(meta['checkpoint']).name)}</h1>"]
    body.append(f"<p class='meta'>{html.escape(meta['checkpoint'])} · {result.kind} · training step {meta['step']} · "
                f"{meta['sample_rate']} Hz · mel preset {html.escape(str(meta['preset']))} · sampler "
                f"{html.escape(meta['sampler'] or 'default')} · seed {meta['seed']} · torch {html.escape(meta['torch_version'])} · "
                f"{html.escape(meta['timestamp'])}</p>")
    for n, how in (meta.get("sampling") or {}).items():
        body.append(f"<p class='meta'>{html.escape(how)}</p>")
    body.append("<p class='meta'>Tables: <a href='results.csv'>results.csv</a> · <a href='results.json'>results.json</a></p>")
    body.append("<h2>Mean scores</h2>")
    body.append(_means_table(result))
    if result.kind == "vocoder":
        body.append("<p class='note'>Reference rows from the same mel: the reference itself (the ceiling) and "
                    "Griffin-Lim (32 iterations, a floor). PESQ is wideband at 16 kHz (1.04 to 4.64); STOI 0 to 1; "
                    "F0 by pYIN (60 to 500 Hz), RMSE over frames voiced in both; DNSMOS (P.835: speech SIG, "
                    "background BAK, overall OVRL, 1 to 5) rates each clip alone, the reference included; "
                    "RTF = compute seconds per audio second.</p>")
    else:
        body.append("<p class='note'>Statistics of the generated set against the reference set: L1 between mean "
                    "ln-mel spectra, and 1-D Wasserstein distances of per-frame loudness (RMS, dBFS) and spectral "
                    "flatness. White noise at the reference's level is a floor; one half of the reference set "
                    "against the other shows the statistics' own spread. DNSMOS (P.835, 1 to 5) is the mean over "
                    "each row's clips; the reference row's over excerpts as long as the generated clips.</p>")
    return body


def _vocoder_cards(plt, result: EvalResult, config: AudioConfig) -> list[str]:
    """One row of cards per reference file: each system's spectrogram, player and scores."""
    out, body = result.out_dir, []
    labels = {m.key: m.label for m in result.metrics}
    for name in result.files:
        rows = [r for r in result.rows if r["file"] == name]
        ref = next(r for r in rows if r["system"] == REFERENCE)
        vmax = float(_spectrogram_db(out / ref["audio"], config).max())
        cards = []
        for r in rows:
            img = f"img/{name}/{Path(r['audio']).stem}.png"
            _save_spectrogram(plt, _spectrogram_db(out / r["audio"], config), out / img, None, config, vmax)
            scores = " · ".join(f"{labels[k]} {_fmt(r.get(k), k)}" for k in CARD_METRICS
                                if k in labels and (r["system"] != REFERENCE or k not in PAIRED))
            cards.append(_card(r["label"], img, r["audio"], scores))
        columns = f"grid-template-columns: repeat({len(cards)}, minmax(230px, 1fr))"  # one row: side by side
        body.append(f"<h2>{html.escape(name)}</h2><div class='row' style='{columns}'>{''.join(cards)}</div>")
    return body


def _generator_cards(plt, result: EvalResult, config: AudioConfig) -> list[str]:
    """A grid of cards per system (the reference clips first), one colour scale for all."""
    out, body = result.out_dir, []
    groups = [("reference clips", "reference", next((r["audio"] for r in result.rows
                                                      if r["system"] in (REFERENCE, HALVES)), None))]
    groups += [(r["label"], Path(r["audio"][0]).parent.name, r["audio"]) for r in result.rows
               if r["system"] not in (REFERENCE, HALVES)]
    if groups[0][2] is None:
        ref_dir = out / "audio" / "reference"
        groups[0] = ("reference clips", "reference",
                     [f"audio/reference/{p.name}" for p in sorted(ref_dir.glob("*.wav"))])
    vmax = None  # one colour scale for every group: the reference clips' loudest bin
    for title, key, audio in groups:
        cards = []
        specs = [(rel, _spectrogram_db(out / rel, config)) for rel in audio[:MAX_CLIPS_SHOWN]]
        if vmax is None:
            vmax = max(float(s.max()) for _, s in specs) if specs else 0.0
        for rel, db in specs:
            img = f"img/{key}/{Path(rel).stem}.png"
            _save_spectrogram(plt, db, out / img, None, config, vmax)
            cards.append(_card(Path(rel).stem, img, rel))
        body.append(f"<h2>{html.escape(title)}</h2><div class='grid'>{''.join(cards)}</div>")
    return body
