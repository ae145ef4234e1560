"""The transfer matrix, its clustering and the suggested groups, on bits per byte with known structure."""

from __future__ import annotations

import numpy as np
import pytest

from occiforge.experts.transfer import affinity, change_matrix, cluster

LANGS = ["es", "it", "pt", "de", "nl", "sv"]
FAMILY = {"es": 0, "it": 0, "pt": 0, "de": 1, "nl": 1, "sv": 1}


def _bpb(seed: int = 0) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Training on a language helps it by 20%, its family by 8%, the others by 1% (plus noise)."""
    rng = np.random.default_rng(seed)
    base = {lang: 4.0 + rng.uniform(-0.5, 0.5) for lang in LANGS}
    trained = {i: {j: base[j] * (1 - (0.2 if i == j else 0.08 if FAMILY[i] == FAMILY[j] else 0.01) + rng.normal(0, 0.003))
                   for j in LANGS} for i in LANGS}
    return base, trained


def test_change_matrix_is_relative_change_against_the_base():
    base, trained = _bpb()
    change = change_matrix(base, trained, LANGS)
    assert change.shape == (6, 6)
    assert change[0, 1] == pytest.approx((trained["es"]["it"] - base["it"]) / base["it"])
    assert np.all(np.diag(change) < -0.18) and np.all(change < 0)


def test_clustering_finds_the_families():
    base, trained = _bpb()
    change = change_matrix(base, trained, LANGS)
    sym = affinity(change)
    assert np.allclose(sym, sym.T) and np.allclose(np.diag(sym), 1.0)
    out = cluster(change, LANGS, groups=2)
    assert sorted(map(sorted, out["groups"])) == [["de", "nl", "sv"], ["es", "it", "pt"]]
    assert out["threshold"] is not None and len(out["linkage"]) == 5
    assert len(cluster(change, LANGS)["groups"]) == 2  # default: about sqrt(6)
    singles = cluster(change, LANGS, groups=6)["groups"]
    assert sorted(g[0] for g in singles) == sorted(LANGS)


def test_transfer_plots(tmp_path):
    from occiforge.experts.plots import dendrogram, heatmap

    base, trained = _bpb()
    change = change_matrix(base, trained, LANGS)
    out = cluster(change, LANGS, groups=2)
    heatmap((100 * change).tolist(), LANGS, LANGS, "t", tmp_path / "m.png", fmt="{:.0f}", cmap="RdBu_r", center=True)
    dendrogram(np.asarray(out["linkage"]), LANGS, out["threshold"], tmp_path / "d.png")
    assert (tmp_path / "m.png").stat().st_size > 5000 and (tmp_path / "d.png").stat().st_size > 5000
