"""HTML reports with plots, for people who would rather look than read."""

from __future__ import annotations

import base64
import html
import io
from typing import Protocol, Sequence

import numpy as np


class StageFigures(Protocol):
    """What the optimize report shows of a stage: tinydeploy.optimize.metrics.StageMetrics has
    these (a layer above this one, so it is named here, not imported)."""
    stage: str
    accuracy: float
    loo_accuracy: float | None
    loo_samples: int | None
    engine: str
    flash_bytes: int | None
    arena_bytes: int | None
    latency_ms: float | None
    macs: int
    meets_targets: bool
    seconds: float
    history: list[dict]
    extra_histories: dict[str, list[dict]]

from tinydeploy.core.names import TFLM


def _figure_png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _n(value, spec: str = ",") -> str:
    """A figure formatted, or a dash where no engine could cost the model (None)."""
    return "—" if value is None else format(value, spec)


def _scatter(points: list[tuple[str, float, int | None]], limit: float, xlabel: str):
    """Accuracy against a cost in bytes: one point (stage, accuracy, bytes) a stage."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for stage, accuracy, cost in points:
        if cost is None:  # no engine of the board runs it: nothing to place
            continue
        x = cost / 1024
        ax.scatter(x, accuracy * 100, s=40)
        ax.annotate(stage, (x, accuracy * 100), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.axvline(limit, color="red", linestyle="--", linewidth=1, label=f"budget {limit:g} KB")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("int8 accuracy on TFLM (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    png = _figure_png(fig)
    plt.close(fig)
    return png


def _seek_plot(tried: list[dict], targets: dict):
    """Latency against flash of every architecture target seeking costed, met or missed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for point in tried:
        ok = not point["misses"]
        ax.scatter(point["flash_bytes"] / 1024, point["latency_ms"], s=30, marker="o" if ok else "x",
                   color="tab:green" if ok else "tab:red")
    ax.axvline(targets["max_model_kb"], color="red", linestyle="--", linewidth=1)
    ax.axhline(targets["max_latency_ms"], color="red", linestyle=":", linewidth=1)
    ax.set_xlabel("flash (KB)")
    ax.set_ylabel("latency (ms, estimate)")
    ax.set_title("o meets the cost targets, x misses", fontsize=9)
    ax.grid(alpha=0.3)
    png = _figure_png(fig)
    plt.close(fig)
    return png


def _curves(stages: Sequence[StageFigures]):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10.5, 3.6))
    offset = 0
    for s in stages:
        curves = [("", s.history)]
        if s.extra_histories.get("fixed4"):
            curves.append((" (fixed 4-bit)", s.extra_histories["fixed4"]))
        for suffix, history in curves:
            values = [h.get("val_accuracy") for h in history if h.get("val_accuracy") is not None]
            if values:
                ax.plot(range(offset + 1, offset + len(values) + 1), [v * 100 for v in values],
                        label=s.stage + suffix, linestyle="--" if suffix else "-")
        offset += max((len(h) for _, h in curves), default=0)
    ax.set_xlabel("epoch (stages one after another)")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=4)
    png = _figure_png(fig)
    plt.close(fig)
    return png


def frontend_png(windows, features, labels: Sequence[str], title: str) -> bytes:
    """What a front end made of one window per class: the raw window (left) and its features
    (right: its rows, frames or time, across, its columns up), one class a row, as PNG bytes.

    Args:
        windows: [classes, steps, channels] raw windows.
        features: [classes, rows, cols] their float features.
        labels: each row's class name.
        title: the front end, in words.
    """
    plt = _pyplot()
    count = len(windows)
    fig, axes = plt.subplots(count, 2, figsize=(9, 1.6 * count + 0.6), squeeze=False)
    for row, (window, feature, label) in enumerate(zip(windows, features, labels)):
        raw = axes[row][0]
        raw.plot(window, linewidth=0.6)
        raw.set_ylabel(str(label), rotation=0, ha="right", va="center", fontsize=8)
        raw.tick_params(labelsize=7)
        picture = np.asarray(feature).reshape(len(feature), -1).T  # features up, rows (frames, time) across
        if picture.shape[1] == 1:  # one row (a pooled spectrum, statistics): its values as bars
            axes[row][1].bar(np.arange(len(picture)), picture[:, 0], width=0.8, color="#7a3b8f")
        else:
            handle = axes[row][1].imshow(picture, aspect="auto", origin="lower", cmap="magma",
                                         interpolation="nearest")
            fig.colorbar(handle, ax=axes[row][1], fraction=0.04, pad=0.02)
        axes[row][1].tick_params(labelsize=7)
        if row == 0:
            raw.set_title("raw window", fontsize=9)
            axes[row][1].set_title("features (rows across, columns up)" if picture.shape[1] > 1
                                   else "features (one row: each value)", fontsize=9)
    fig.suptitle(title, fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def optimize_html(report: dict, stages: Sequence[StageFigures], frontend_plot: bytes | None = None) -> str:
    """The optimize report as a self-contained HTML page.

    Args:
        report: optimize's report (report.json's content): data, board, targets, the choice.
        stages: each stage's metrics, in the order they ran.
        frontend_plot: PNG of what the front end made of one window per class (frontend_png).

    Returns:
        The page.
    """
    targets = report["targets"]
    rows = "".join(
        f"<tr><td>{html.escape(s.stage)}</td><td>{s.accuracy * 100:.2f}%"
        + (f" (leave-one-out {s.loo_accuracy * 100:.1f}%, n={s.loo_samples})" if s.loo_accuracy is not None else "")
        + "</td>"
        f"<td>{html.escape(s.engine)}</td><td>{_n(s.flash_bytes)}</td>"
        f"<td>{_n(s.arena_bytes)}</td><td>{s.macs:,}</td><td>{_n(s.latency_ms, '.3f')}</td>"
        f"<td>{'yes' if s.meets_targets else 'no'}</td><td>{s.seconds}</td></tr>" for s in stages)
    chosen = report["chosen"]
    verdict = "every target met" if report["met"] else "targets missed: " + "; ".join(report["missed"])
    images = [
        ("Accuracy against flash", _scatter([(s.stage, s.accuracy, s.flash_bytes) for s in stages],
                                            targets["max_model_kb"], "flash (KB)")),
        ("Accuracy against arena", _scatter([(s.stage, s.accuracy, s.arena_bytes) for s in stages],
                                            targets["max_arena_kb"],
                                            "arena on the board (KB): TFLM measured, with its kernels' scratch, 32-bit")),
    ]
    seek = report.get("seek") or {}
    if seek.get("tried"):
        images.append(("Target seeking: the costs tried (width bisection, then stride and depth)",
                       _seek_plot(seek["tried"], targets)))
    if frontend_plot is not None:
        images.append(("What the front end made of one training window of each class",
                       base64.b64encode(frontend_plot).decode()))
    figures = "".join(f"<figure><img src='data:image/png;base64,{png}'><figcaption>{t}</figcaption></figure>"
                      for t, png in images)
    curves = _curves(stages)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>tinydeploy optimize report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}
figure{{display:inline-block;margin:0 1em 1em 0}}</style></head><body>
<h1>tinydeploy optimize</h1>
<p>data {html.escape(report['data']['name'])} ({report['data']['train']} train / {report['data']['val']} validation),
board {html.escape(report['board'])}, budget {report['budget']}, seed {report['seed']}.
Accuracy is the int8 model's on the TFLM interpreter; arena is what the board needs (TFLM measured on this host, with the board's kernel scratch, at 32-bit sizes); latency is an estimate.</p>
<p><b>Chosen: {html.escape(chosen['stage'])}</b> — {chosen['accuracy_tflm'] * 100:.2f}% ·
{_n(chosen['flash_bytes'])} B flash · {_n(chosen['arena_bytes'])} B arena · {_n(chosen['latency_ms'], '.3f')} ms (estimate).
{html.escape(verdict)}. Chosen on {html.escape(chosen.get('chosen_on', 'validation accuracy'))}.</p>
<p>Engine: <b>{html.escape(chosen.get('engine', TFLM))}</b> — {html.escape(chosen.get('engine_why', ''))}.
Latency basis: {html.escape(chosen.get('latency_basis', 'estimate'))}. TFLM vs TFLite reference kernels: top-1 agreement
{chosen['reference_check']['top1_agreement'] * 100:.2f}%, largest output difference
{chosen['reference_check']['max_output_diff_lsb']} LSB.</p>
{_frontend_html(report)}
{_yardsticks_html(report)}
<table><tr><th>stage</th><th>accuracy</th><th>engine</th><th>flash B</th><th>arena B</th><th>MACs</th><th>latency ms (est.)</th>
<th>meets targets</th><th>seconds</th></tr>{rows}</table>
<h2>Plots</h2>{figures}
<figure><img src='data:image/png;base64,{curves}'><figcaption>Training curves</figcaption></figure>
</body></html>"""


def _frontend_html(report: dict) -> str:
    """The front end the model takes its features from, and every candidate's scores (empty for
    a report without them)."""
    front = report.get("frontend")
    if not front:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(c['name'])}</td><td>{html.escape(c['spec'])}</td><td>{'x'.join(map(str, c['features']))}</td>"
        f"<td>{'' if c['score'] is None else format(c['score'], '.3f')}</td>"
        f"<td>{'' if c['ridge_cv'] is None else format(c['ridge_cv'], '.3f')}</td>"
        f"<td>{'' if c['one_nn_cv'] is None else format(c['one_nn_cv'], '.3f')}</td>"
        f"<td>{c['latency_ms_estimate']:.3f}</td><td>{c['ram_bytes']:,}</td>"
        f"<td>{html.escape(c['note'])}</td></tr>" for c in front.get("candidates", []))
    table = (f"<table><tr><th>candidate</th><th>--front-end</th><th>features</th><th>score</th><th>ridge CV</th>"
             f"<th>1-NN CV</th><th>ms (est.)</th><th>RAM B</th><th>note</th></tr>{rows}</table>" if rows else "")
    return (f"<h2>Front end</h2><p><b>{html.escape(front['describe'])}</b> ({html.escape(front['how'])}: "
            f"{html.escape(front.get('reason', ''))}).</p>{table}")


def _yardsticks_html(report: dict) -> str:
    """The yardsticks beside the deployed model, and the default accuracy checks (empty for an
    older report without them)."""
    rows = report.get("yardsticks")
    if not rows:
        return ""
    body = "".join(
        f"<tr><td>{html.escape(r['name'])}</td><td>{html.escape(r['on'])} ({r['samples']})</td>"
        f"<td>{html.escape(r['reference'])}</td>"
        + (f"<td>{r['accuracy'] * 100:.1f}%</td>" if r["accuracy"] is not None else f"<td>{html.escape(r['note'])}</td>")
        + f"<td>{'' if r['deployed_accuracy'] is None else format(r['deployed_accuracy'] * 100, '.1f') + '%'}</td>"
        f"<td>{'' if r['ratio'] is None else format(r['ratio'], '.2f')}</td></tr>" for r in rows)
    checks = report.get("accuracy_checks") or {}
    if checks.get("replaced_by"):
        verdicts = f"<p>Accuracy checks vs chance and 1-NN: replaced by {html.escape(checks['replaced_by'])}.</p>"
    else:
        verdicts = "".join(f"<p>{html.escape(v['target'])}: <b>{'met' if v['met'] else 'MISSED'}</b> — "
                           f"{html.escape(v['detail'])}.</p>" for v in checks.get("verdicts", []))
    return (f"<h2>Yardsticks</h2><p>Float classifiers on the same windows as the deployed int8 model, to judge it "
            f"by; never deployed.</p><table><tr><th>yardstick</th><th>windows</th><th>fitted on</th>"
            f"<th>yardstick accuracy</th><th>deployed int8 accuracy</th><th>ratio</th></tr>{body}</table>{verdicts}"
            f"<h2>Stages</h2>")


def search_html(summary: dict, trials: list[dict]) -> str:
    """The search's Pareto front as a table and a plot."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if trials:
        points = ax.scatter([t["latency_ms"] for t in trials], [t["accuracy"] * 100 for t in trials],
                            c=[t["arena_bytes"] / 1024 for t in trials], cmap="viridis", s=30)
        fig.colorbar(points, ax=ax, label="arena on the board (KB, TFLM measured + its kernels)")
    front = summary["pareto_front"]
    if front:
        ordered = sorted(front, key=lambda p: p["latency_ms"])
        ax.plot([p["latency_ms"] for p in ordered], [p["accuracy"] * 100 for p in ordered], "r-o", mfc="none",
                label="Pareto front (within budget)")
        ax.legend(fontsize=8)
    ax.set_xlabel("estimated latency (ms)")
    ax.set_ylabel("int8 accuracy on TFLM (%)")
    ax.grid(alpha=0.3)
    png = _figure_png(fig)
    plt.close(fig)
    rows = "".join(
        f"<tr><td>{p['trial']}</td><td>{p['accuracy'] * 100:.2f}%</td><td>{p['latency_ms']:.3f}</td>"
        f"<td>{p['arena_bytes']:,}</td><td>{p['flash_bytes']:,}</td><td>{len(p['arch']['blocks'])}</td></tr>"
        for p in front)
    best = summary.get("best")
    chosen = (f"<p><b>Chosen: trial {best['trial']}</b> — {best['accuracy'] * 100:.2f}%, {best['latency_ms']:.3f} ms, "
              f"{best['arena_bytes']:,} B arena, {best['flash_bytes']:,} B flash (best_arch.json).</p>"
              if best else "<p>No trial met every budget yet.</p>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>tinydeploy search</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style></head><body>
<h1>tinydeploy search: {html.escape(summary['study'])}</h1>
<p>{summary['trials']} trials, {summary['complete']} trained, {summary['rejected_before_training']} rejected before
training (over a budget), {summary['failed']} failed; board {html.escape(summary['board'])};
storage {html.escape(summary['storage'])}.</p>{chosen}
<img src='data:image/png;base64,{png}'>
<h2>Pareto front</h2><table><tr><th>trial</th><th>accuracy</th><th>latency ms (est.)</th><th>arena B</th>
<th>flash B</th><th>blocks</th></tr>{rows}</table></body></html>"""


def _layers_svg(layers: list[dict], unit: str) -> str:
    """Horizontal bars, one pair a layer: measured, and the board profile's estimate where there
    is one. Plain SVG, so that bench needs no plotting library (a light install has none)."""
    measured = [layer["us"] if layer["us"] is not None else layer["ticks"] for layer in layers]
    estimates = [layer.get("estimate_us") for layer in layers]
    top = max([*measured, *(e for e in estimates if e is not None), 1e-9])
    label_w, bar_w, row_h = 190, 420, 22
    height = row_h * len(layers) + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 90}" height="{height}" '
             'font-family="sans-serif" font-size="11">']
    for i, (layer, value, estimate) in enumerate(zip(layers, measured, estimates)):
        y = 8 + i * row_h
        name = html.escape(f"{layer['index']} {layer.get('op', '')}")
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{name}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 2}" width="{bar_w * value / top:.1f}" height="8" fill="#1f77b4"/>'
                     f'<text x="{label_w + bar_w * value / top + 4:.1f}" y="{y + 10}">{value:,.4g}</text>')
        if estimate is not None:
            parts.append(f'<rect x="{label_w}" y="{y + 11}" width="{bar_w * estimate / top:.1f}" height="8" '
                         'fill="#ff7f0e"/>')
    legend = height - 14
    parts.append(f'<rect x="{label_w}" y="{legend - 8}" width="10" height="8" fill="#1f77b4"/>'
                 f'<text x="{label_w + 14}" y="{legend}">measured on the device ({html.escape(unit)})</text>')
    if any(e is not None for e in estimates):
        parts.append(f'<rect x="{label_w + 230}" y="{legend - 8}" width="10" height="8" fill="#ff7f0e"/>'
                     f'<text x="{label_w + 244}" y="{legend}">board profile\'s estimate (µs)</text>')
    return "".join(parts) + "</svg>"


def profile_html(results: dict) -> str:
    """bench --profile: each layer's time on the device beside its estimate, as bars and a table."""
    profile, device = results["profile"], results.get("device") or {}
    layers = profile["layers"]
    unit = "µs" if layers and layers[0]["us"] is not None else "ticks"
    def row(layer: dict) -> str:
        cells = [layer["index"], layer.get("op", ""), "×".join(map(str, layer.get("shape", []))),
                 layer.get("macs", ""), f"{layer['ticks']:,}", "" if layer["us"] is None else layer["us"],
                 "" if layer["share"] is None else f"{layer['share'] * 100:.1f}%", layer.get("estimate_us", "")]
        return "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in cells) + "</tr>"

    rows = "".join(row(layer) for layer in layers)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>tinydeploy bench profile</title>
<style>body{{font-family:sans-serif;max-width:60em}}td,th{{padding:2px 8px;text-align:right}}</style></head><body>
<h1>tinydeploy bench: per layer</h1>
<p>board {html.escape(str(device.get('board', '?')))}, engine {html.escape(str(device.get('engine', '?')))},
model sha256 {html.escape(str(results.get('model_sha256', ''))[:16])}…; {html.escape(profile['basis'])}.</p>
{_layers_svg(layers, unit)}
<table><tr><th>#</th><th>op</th><th>output</th><th>MACs</th><th>ticks</th><th>µs</th><th>share</th>
<th>estimate µs</th></tr>{rows}</table>
</body></html>"""
