"""Inter-lingual transfer: what continuing a base on language i does to the bits per byte of language j.

- `change[i][j]` = (bpb of the model continued on i, on j − base bpb on j) / base bpb on j:
  negative where training on i helps j.
- `affinity[i][j]`: the gain on j from training on i as a share of j's gain from its own training,
  symmetrised ((S + Sᵀ) / 2, 1 on the diagonal); the distance is 1 − affinity, clipped at 0.
- The languages are clustered hierarchically on that distance (scipy, average linkage by
  default) and the tree is cut into `groups` clusters: the suggested expert groups, languages
  that help each other sharing one expert.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def change_matrix(base: dict[str, float], trained: dict[str, dict[str, float]], langs: list[str]) -> np.ndarray:
    """Rows: the language a model was continued on; columns: the language scored; relative bpb change."""
    return np.array([[(trained[i][j] - base[j]) / base[j] for j in langs] for i in langs])


def affinity(change: np.ndarray) -> np.ndarray:
    gain = -change
    own = np.clip(np.diag(gain), 1e-9, None)
    share = gain / own[None, :]  # column j: gains on j relative to training on j itself
    sym = (share + share.T) / 2
    np.fill_diagonal(sym, 1.0)
    return sym


def cluster(change: np.ndarray, langs: list[str], groups: int | None = None, method: str = "average") -> dict[str, Any]:
    """Linkage, the cut into `groups` clusters (default about √n) and the groups, largest first."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    dist = np.clip(1.0 - affinity(change), 0.0, None)
    np.fill_diagonal(dist, 0.0)
    z = linkage(squareform(dist, checks=False), method=method)
    k = min(groups or max(1, round(math.sqrt(len(langs)))), len(langs))
    labels = fcluster(z, t=k, criterion="maxclust")
    found: dict[int, list[str]] = {}
    for lang, label in zip(langs, labels):
        found.setdefault(int(label), []).append(lang)
    heights = sorted(z[:, 2])
    threshold = float((heights[-k] + heights[-k + 1]) / 2) if 1 < k <= len(heights) else None
    return {"linkage": z.tolist(), "distance": dist.round(4).tolist(), "threshold": threshold,
            "groups": sorted(found.values(), key=lambda g: (-len(g), g))}
