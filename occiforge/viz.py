"""Tables and plots for the reports every stage writes (HTML tables, headless matplotlib, inlined images)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def table_html(rows: dict[str, dict[str, Any]], cols: list[str], lower_is_better: bool | None = None,
               spaced_headers: bool = False) -> str:
    """An HTML table, rows x cols; with a direction given, the best value of each column is bold.
    `spaced_headers` shows `bytes_per_token` as `bytes per token`."""
    best: dict[str, Any] = {}
    if lower_is_better is not None:
        for c in cols:
            vals = [r[c] for r in rows.values() if isinstance(r.get(c), (int, float))]
            best[c] = (min if lower_is_better else max)(vals) if vals else None
    head = "".join(f"<th>{html.escape(c.replace('_', ' ') if spaced_headers else c)}</th>" for c in cols)
    body = []
    for name, row in rows.items():
        cells = []
        for c in cols:
            v = row.get(c, "")
            text = f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))
            cells.append(f"<td><b>{text}</b></td>" if best.get(c) is not None and v == best[c] else f"<td>{text}</td>")
        body.append(f"<tr><th>{html.escape(str(name))}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(body)}</table>"


def grouped_bars(table: dict[str, dict[str, float]], langs: list[str], ylabel: str, path: Path) -> None:
    """One group per language, one bar per row of `table` (a model or a tokenizer)."""
    names = list(table)
    width = 0.8 / max(len(names), 1)
    width_in = min(18.0, 2 + 0.5 * len(langs) * max(1.0, len(names) / 4))
    fig, ax = plt.subplots(figsize=(max(6.0, width_in), 4.0))
    for i, name in enumerate(names):
        xs = [j + i * width - 0.4 + width / 2 for j in range(len(langs))]
        ax.bar(xs, [table[name].get(lang, float("nan")) for lang in langs], width, label=name)
    ax.set_xticks(range(len(langs)), langs)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncol=min(len(names), 8), loc="upper center", bbox_to_anchor=(0.5, -0.08), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def loss_curves(histories: dict[str, list[dict[str, Any]]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name, hist in histories.items():
        ax.plot([h["step"] for h in hist], [h["loss"] for h in hist], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("train loss")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def image_tag(path: Path, alt: str) -> str:
    """An <img> with the PNG inlined (the page stays one self-contained file); '' if absent."""
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
