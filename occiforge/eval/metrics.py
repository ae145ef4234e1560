"""Multiple-choice metrics, defined as lm-evaluation-harness defines them.

acc: the choice with the highest log-likelihood is the answer. acc_norm: the same after dividing
each log-likelihood by its choice's length in characters (lm-eval's `completion_len`, the
choice text without the leading delimiter). mc2 (TruthfulQA): the share of probability mass on
the true choices. Ties go to the first choice (numpy's argmax), as in lm-eval; the scorer gives
identical choices of an item one score, so they tie exactly. `chance` is what guessing scores
(1 / number of choices), kept per item so tasks with varying choice counts average it right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

STDERR_METRICS = ("acc", "acc_norm", "mc2")  # the means lm-eval reports a `<metric>_stderr` for


def item_metrics(lls: Sequence[float], choices: Sequence[str], answer: int, labels: Sequence[int] | None = None) -> dict[str, float]:
    ll = np.asarray(lls, dtype=np.float64)
    out = {
        "acc": float(np.argmax(ll) == answer),
        "acc_norm": float(np.argmax(ll / np.array([float(len(c)) for c in choices])) == answer),
        "chance": 1.0 / len(choices),
    }
    if labels is not None:
        p = np.exp(ll - ll.max())
        out["mc2"] = float(p[np.asarray(labels) == 1].sum() / p.sum())
    return out


def mean_stderr(values: Sequence[float]) -> float | None:
    """lm-eval's `mean_stderr`: sample standard deviation (n - 1) over sqrt(n); None (lm-eval's
    "N/A") for fewer than two items."""
    n = len(values)
    if n < 2:
        return None
    mu = math.fsum(values) / n
    return math.sqrt(math.fsum((x - mu) ** 2 for x in values) / (n - 1)) / math.sqrt(n)


def aggregate(rows: Sequence[dict[str, float]]) -> dict[str, float | int | None]:
    """Means of every metric over items, `<metric>_stderr` as lm-eval's `acc_stderr`, and the count `n`."""
    keys = sorted({k for r in rows for k in r})
    out: dict[str, float | int | None] = {}
    for k in keys:
        values = [r[k] for r in rows if k in r]
        out[k] = float(np.mean(values))
        if k in STDERR_METRICS:
            out[f"{k}_stderr"] = mean_stderr(values)
    out["n"] = len(rows)
    return out
