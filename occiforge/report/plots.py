"""Plots for the report (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


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
