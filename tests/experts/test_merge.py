"""Merging: occiforge's linear, task arithmetic and TIES give mergekit's tensors to 1e-6."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from occiforge.experts.merge import merge_folders, trim
from occiforge.experts.tensors import ShardWriter, TensorFolder

pytest.importorskip("mergekit")


def mergekit_merge(method: str, experts: list[Path], out: Path, base: Path | None = None, weights: list[float] | None = None,
                   density: float = 1.0, scale: float = 1.0) -> Path:
    """The same merge through mergekit's own API (`mergekit-yaml`), fp32 throughout."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    weights = weights or [1.0] * len(experts)
    extra = {"density": density} if method == "ties" else {}
    tree = {"merge_method": method, "dtype": "float32",
            "models": [{"model": str(p), "parameters": {"weight": w, **extra}} for p, w in zip(experts, weights)]}
    if base is not None:
        tree["base_model"] = str(base)
        if scale != 1.0:
            tree["parameters"] = {"lambda": scale}
    run_merge(MergeConfiguration.model_validate(tree), str(out),
              MergeOptions(copy_tokenizer=False, write_model_card=False, quiet=True, lazy_unpickle=False))
    return out


def assert_same_tensors(ours: Path, theirs: Path, atol: float = 1e-6) -> int:
    a, b = TensorFolder(ours), TensorFolder(theirs)
    common = set(a.names()) & set(b.names())
    assert "model.layers.0.mlp.up_proj.weight" in common and len(common) >= len(a.names()) - 1
    for name in sorted(common):
        diff = (a.get(name) - b.get(name)).abs().max().item()
        assert diff <= atol, (name, diff)
    return len(common)


CASES = [
    ("linear", {"weights": [1.0, 2.0, 0.5]}),
    ("task_arithmetic", {"weights": [0.3, 0.5, 0.7], "scale": 0.8}),
    ("ties", {"weights": [1.0, 0.6, 0.9], "density": 0.3}),
]


@pytest.mark.parametrize("method,kw", CASES, ids=[c[0] for c in CASES])
def test_merge_matches_mergekit(family, tmp_path, method, kw):
    experts = [family["e1"], family["e2"], family["e3"]]
    base = None if method == "linear" else family["base"]
    merge_folders(method, experts, tmp_path / "ours", base, **kw)
    mergekit_merge(method, experts, tmp_path / "theirs", base, **kw)
    assert assert_same_tensors(tmp_path / "ours", tmp_path / "theirs") >= 19
    # and the merge is not trivially one of its inputs
    name = "model.layers.1.mlp.down_proj.weight"
    merged = TensorFolder(tmp_path / "ours").get(name)
    assert all((merged - TensorFolder(p).get(name)).abs().max() > 1e-3 for p in experts)


def test_ties_trims_and_elects_signs():
    delta = torch.tensor([0.1, -0.5, 0.05, 2.0, -0.01])
    assert trim(delta, 0.4).tolist() == [0.0, -0.5, 0.0, 2.0, 0.0]
    from occiforge.experts.merge import task_arithmetic

    base = torch.zeros(3)
    experts = [torch.tensor([1.0, -1.0, 2.0]), torch.tensor([3.0, 1.0, -4.0])]
    # signs: +, (-1+1 = 0 -> +), (2-4 < 0 -> -): only agreeing deltas are averaged
    out = task_arithmetic(base, experts, [1.0, 1.0], normalize=True, elect_sign=True)
    assert out.tolist() == [2.0, 1.0, -4.0]


def test_shard_writer_writes_an_index_past_the_shard_size(family, tmp_path):
    merge_folders("linear", [family["e1"], family["e2"]], tmp_path / "sharded", max_shard_bytes=20_000)
    files = sorted(p.name for p in (tmp_path / "sharded").glob("*.safetensors"))
    assert len(files) > 1 and (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    merge_folders("linear", [family["e1"], family["e2"]], tmp_path / "single")
    assert assert_same_tensors(tmp_path / "sharded", tmp_path / "single", atol=0) >= 19
    assert not list((tmp_path / "sharded").glob(".shard-*"))
    assert isinstance(ShardWriter(tmp_path / "w").max, int)
