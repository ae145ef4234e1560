"""Multiple-choice metrics, defined as lm-evaluation-harness defines them.

acc: the choice with the highest log-likelihood is the answer. acc_norm: the same after dividing
each log-likelihood by its choice's length in characters (lm-eval's `completion_len`, the
choice text without the leading delimiter). mc2 (TruthfulQA): the share of probability mass on
the true choices. Ties go to the first choice (numpy's argmax), as in lm-eval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def item_metrics(lls: Sequence[float], choices: Sequence[str], answer: int, labels: Sequence[int] | None = None) -> dict[str, float]:
    ll = np.asarray(lls, dtype=np.float64)
    out = {
        "acc": float(np.argmax(ll) == answer),
        "acc_norm": float(np.argmax(ll / np.array([float(len(c)) for c in choices])) == answer),
    }
    if labels is not None:
        p = np.exp(ll - ll.max())
        out["mc2"] = float(p[np.asarray(labels) == 1].sum() / p.sum())
    return out


def aggregate(rows: Sequence[dict[str, float]]) -> dict[str, float | int]:
    """Means of every metric over items, and the item count `n`."""
    keys = sorted({k for r in rows for k in r})
    out: dict[str, float | int] = {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}
    out["n"] = len(rows)
    return out
