"""Assembling a Mixtral-format mixture: loads and generates with transformers, equals its expert
when both experts are one model, and lays the experts out as mergekit-moe does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from occiforge.errors import UserError
from occiforge.experts.moe import assemble, language_row_weights
from occiforge.experts.tensors import TensorFolder, check_experts
from tests.experts.conftest import tiny_llama, tiny_tokenizer


def _randomise_routers(folder: Path) -> AutoModelForCausalLM:
    model = AutoModelForCausalLM.from_pretrained(folder)
    torch.manual_seed(1)
    for block in model.model.layers:
        torch.nn.init.normal_(block.mlp.gate.weight, std=1.0)
    return model


@pytest.mark.parametrize("top_k", [1, 2])
def test_two_copies_of_one_expert_give_its_logits(family, tmp_path, top_k):
    assemble([family["e1"], family["e1"]], tmp_path / "moe", top_k=top_k)
    moe = _randomise_routers(tmp_path / "moe")  # whatever the routing, both choices are the same expert
    dense = AutoModelForCausalLM.from_pretrained(family["e1"])
    assert type(moe).__name__ == "MixtralForCausalLM" and moe.config.num_local_experts == 2
    ids = torch.randint(4, 64, (3, 17))
    with torch.no_grad():
        diff = (moe(ids).logits - dense(ids).logits).abs().max().item()
    assert diff < 1e-4, diff
    out = moe.generate(ids[:1, :4], max_new_tokens=6, do_sample=False)
    assert out.shape == (1, 10) and torch.equal(out, dense.generate(ids[:1, :4], max_new_tokens=6, do_sample=False))


def test_a_mixture_of_different_experts_is_none_of_them(family, tmp_path):
    assemble([family["e1"], family["e2"]], tmp_path / "moe", top_k=1)
    moe = _randomise_routers(tmp_path / "moe")
    ids = torch.randint(4, 64, (2, 12))
    with torch.no_grad():
        out = moe(ids).logits
        for e in ("e1", "e2"):
            assert (out - AutoModelForCausalLM.from_pretrained(family[e])(ids).logits).abs().max() > 1e-3


def mergekit_moe(experts: list[Path], base: Path, out: Path) -> Path:
    """The same mixture through mergekit-moe (random gates: only the expert tensors are compared)."""
    from mergekit.merge import MergeOptions
    from mergekit.moe.config import MoEMergeConfig
    from mergekit.scripts.moe import build

    cfg = MoEMergeConfig.model_validate({
        "base_model": str(base), "gate_mode": "random", "dtype": "float32", "experts_per_token": 2,
        "experts": [{"source_model": str(p), "positive_prompts": [f"w{i}"]} for i, p in enumerate(experts)]})
    build(cfg, str(out), MergeOptions(copy_tokenizer=False, write_model_card=False, quiet=True), device="cpu")
    return out


def test_expert_tensors_match_mergekit_moe(family, tmp_path):
    pytest.importorskip("mergekit")
    experts = [family["e1"], family["e2"], family["e3"]]
    assemble(experts, tmp_path / "ours", top_k=2, shared="base", base=family["base"])
    mergekit_moe(experts, family["base"], tmp_path / "theirs")
    ours, theirs = TensorFolder(tmp_path / "ours"), TensorFolder(tmp_path / "theirs")
    names = [n for n in ours.names() if not n.endswith("mlp.gate.weight")]
    assert any(".experts.gate_up_proj" in n for n in names) and set(names) <= set(theirs.names())
    for name in names:
        assert torch.allclose(ours.get(name), theirs.get(name), atol=1e-6, rtol=0), name
    # the shared tensors: mergekit-moe takes the base's; `shared: average` averages the experts'
    assemble(experts, tmp_path / "avg", top_k=2)
    name = "model.layers.1.self_attn.q_proj.weight"
    mean = sum(TensorFolder(p).get(name) for p in experts) / 3
    assert torch.allclose(TensorFolder(tmp_path / "avg").get(name), mean, atol=1e-7)
    assert not torch.allclose(TensorFolder(tmp_path / "avg").get(name), theirs.get(name), atol=1e-3)


def test_embedding_rows_weighted_by_language(family, tmp_path):
    counts = torch.zeros(2, 64)
    counts[0, 10], counts[1, 20] = 1000, 1000  # token 10 is expert 0's language's, token 20 expert 1's
    assemble([family["e1"], family["e2"]], tmp_path / "moe", top_k=1, row_weights=language_row_weights(counts))
    emb = TensorFolder(tmp_path / "moe").get("model.embed_tokens.weight")
    e1, e2 = (TensorFolder(family[e]).get("model.embed_tokens.weight") for e in ("e1", "e2"))
    assert torch.allclose(emb[10], e1[10], atol=1e-3) and torch.allclose(emb[20], e2[20], atol=1e-3)
    assert torch.allclose(emb[30], (e1[30] + e2[30]) / 2, atol=1e-6)  # a token neither uses: the average


def test_top_k_above_the_number_of_experts_is_refused(family, tmp_path):
    with pytest.raises(UserError, match="top_k 3 is larger than the number of experts"):
        assemble([family["e1"], family["e2"]], tmp_path / "moe", top_k=3)
    assert not (tmp_path / "moe").exists()


@pytest.mark.parametrize("odd,expect", [
    ({"hidden": 48}, "differ in architecture (hidden_size: 32 vs 48)"),
    ({"layers": 3}, "differ in architecture (num_hidden_layers: 2 vs 3)"),
    ({"vocab": 80}, "differ in architecture (vocab_size: 64 vs 80)"),
    ({"tokenizer": tiny_tokenizer(shift=1)}, "different tokenizers"),
])
def test_incompatible_experts_are_refused_naming_both(family, tmp_path, odd, expect):
    other = tiny_llama(tmp_path / "odd", seed=7, **odd)
    with pytest.raises(UserError) as err:
        check_experts("moe 'mix'", {"e1": family["e1"], "odd": other})
    msg = str(err.value)
    assert expect in msg and "moe 'mix': e1 and odd" in msg and "\n" not in msg, msg
    assert check_experts("moe 'mix'", {"e1": family["e1"], "e2": family["e2"]})["hidden_size"] == 32
