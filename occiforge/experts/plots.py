"""The experts' figures: a routing heatmap, the transfer matrix and its dendrogram (headless matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from occiforge import viz  # noqa: F401 - imported for its side effect: the headless backend


def heatmap(values: list[list[float]], rows: list[str], cols: list[str], title: str, path: Path, fmt: str = "{:.2f}",
            cmap: str = "viridis", center: bool = False) -> None:
    """Rows x cols with every value written in its cell; `center` puts 0 in the middle of a diverging map."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 + 0.6 * len(cols)), max(2.5, 1.2 + 0.45 * len(rows))))
    lim = float(np.nanmax(np.abs(data))) if center and data.size else None
    im = ax.imshow(data, cmap=cmap, aspect="auto", vmin=-lim if lim else None, vmax=lim)
    ax.set_xticks(range(len(cols)), cols, rotation=45 if len(cols) > 6 else 0, ha="right" if len(cols) > 6 else "center")
    ax.set_yticks(range(len(rows)), rows)
    if len(rows) * len(cols) <= 144:
        for i in range(len(rows)):
            for j in range(len(cols)):
                ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center", fontsize=7, color="w" if not center else "k")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def dendrogram(linkage: Any, labels: list[str], threshold: float | None, path: Path) -> None:
    from scipy.cluster.hierarchy import dendrogram as draw

    fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * len(labels) + 2), 3.6))
    draw(linkage, labels=labels, ax=ax, color_threshold=threshold, leaf_font_size=8)
    if threshold is not None:
        ax.axhline(threshold, color="grey", linestyle="--", linewidth=0.8)
    ax.set_ylabel("distance (1 - normalised transfer)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
