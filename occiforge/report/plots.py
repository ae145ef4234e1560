"""The report's charts, each returned as a `data:` URI so the page stays one self-contained file.

matplotlib (headless Agg, set up by `occiforge.viz`) is imported when a chart is drawn. Every
chart is sized from what it shows, so 24 languages get a wider figure, never a wider page: the
template scales images down to the column width.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

DPI = 96  # small files: the whole report with every chart inlined stays well under a few MB


def _uri(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _figure(width: float, height: float = 3.4, ncols: int = 1) -> tuple[Any, Any]:
    from occiforge.viz import plt  # the core's headless matplotlib

    return plt.subplots(1, ncols, figsize=(width, height), squeeze=False)


def curves(series: Mapping[str, Sequence[tuple[float, float]]], xlabel: str, ylabel: str, log_y: bool = False) -> str:
    """One line per name: e.g. training loss per model against the step."""
    fig, axes = _figure(6.4)
    ax = axes[0][0]
    for name, points in series.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], label=name, linewidth=1.4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return _uri(fig)


def small_multiples(panels: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]], xlabel: str, ylabel: str) -> str:
    """One panel per model, one line per language: training loss per language."""
    n = len(panels)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    from occiforge.viz import plt

    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.6 * rows), squeeze=False, sharey=True)
    for k, (model, lines) in enumerate(panels.items()):
        ax = axes[k // cols][k % cols]
        for lang, points in lines.items():
            ax.plot([p[0] for p in points], [p[1] for p in points], label=lang, linewidth=1.2)
        ax.set_title(model, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].set_ylabel(ylabel)
    return _uri(fig)


def bars(table: Mapping[str, Mapping[str, float]], langs: Sequence[str], ylabel: str,
         errors: Mapping[str, Mapping[str, float]] | None = None, hline: Mapping[str, float] | None = None,
         hline_label: str = "") -> str:
    """Grouped bars, one group per language and one bar per model; optional error bars (e.g. a 95%
    interval) and a per-language reference mark (e.g. chance level)."""
    names = list(table)
    width = 0.8 / max(len(names), 1)
    fig, axes = _figure(min(16.0, max(6.4, 1.0 + 0.42 * len(langs) * max(1.0, len(names) / 3))), 3.6)
    ax = axes[0][0]
    for i, name in enumerate(names):
        xs = [j + i * width - 0.4 + width / 2 for j in range(len(langs))]
        ys = [table[name].get(lang, float("nan")) for lang in langs]
        err = [errors[name].get(lang, 0.0) for lang in langs] if errors and name in errors else None
        ax.bar(xs, ys, width, yerr=err, capsize=2 if err else 0, label=name, error_kw={"linewidth": 0.8})
    if hline:
        for j, lang in enumerate(langs):
            if lang in hline:
                ax.hlines(hline[lang], j - 0.45, j + 0.45, colors="black", linestyles="dashed", linewidth=1,
                          label=hline_label if j == 0 else None)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(range(len(langs)), langs)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncol=min(len(names) + 1, 7), loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _uri(fig)
