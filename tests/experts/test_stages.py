"""The merge, moe and transfer stages through the CLI on a tiny run, and their bad input: one line,
exit 2, before any weights are written, no checkpoint left looking complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from occiforge.cli import main
from tests.conftest import fails_in_one_line, tiny_tree, write_recipe
from tests.experts.conftest import tiny_llama, tiny_tokenizer


def _experts_tree(run: Path, **over) -> dict:
    tree = tiny_tree(run, langs=("en", "de", "fr"))
    tree["models"]["cpt"]["replay"] = 0.0
    tree["merge"] = {"merged": {"experts": ["cpt-de", "cpt-fr"]}}
    tree["moe"] = {"mix": {"experts": ["cpt-de", "cpt-fr"], "top_k": 1, "analysis_languages": ["de", "fr", "en"],
                           "router": {"calibration_tokens": 512, "train": "all", "steps": 4, "batch_size": 2}}}
    tree["transfer"] = {"models": "cpt"}
    tree.update(over)
    return tree


@pytest.mark.parametrize("section,entry,expect", [
    ("moe", {"mix": {"experts": ["cpt-de"] * 2, "top_k": 3}}, "moe.mix: top_k 3 is larger than the number of experts (2: cpt-de, cpt-de)"),
    ("moe", {"base": {"experts": ["cpt-de", "cpt-fr"]}}, "moe.base: a model named 'base' already exists"),
    ("moe", {"mix": {"experts": ["cpt-de", "base"]}}, "moe.mix.languages: expert 'base' has no target language"),
    ("merge", {"m": {"experts": ["cpt-de", "cpt-fr"], "weights": [1.0]}}, "merge.m: weights: 1 given for 2 experts (cpt-de, cpt-fr)"),
    ("transfer", {"models": "base"}, "transfer.models: 'base' must name a models entry with 'targets'"),
])
def test_recipe_errors_name_the_models(capsys, tmp_path, section, entry, expect):
    tree = tiny_tree(tmp_path / "run", langs=("en", "de", "fr"))
    tree[section] = entry
    assert expect in fails_in_one_line(capsys, ["run", write_recipe(tmp_path, tree)])
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_merge_moe_transfer_stages_end_to_end(tmp_path):
    run = tmp_path / "run"
    assert main(["run", write_recipe(tmp_path, _experts_tree(run)), "-q"]) == 0
    registry = {m["name"]: m for m in json.loads((run / "merge" / "manifest.json").read_text())["models"]}
    assert registry["merged"]["kind"] == "merge" and registry["merged"]["experts"] == ["cpt-de", "cpt-fr"]
    moe = json.loads((run / "moe" / "manifest.json").read_text())
    assert moe["models"][0]["kind"] == "moe" and moe["models"][0]["languages"] == ["de", "fr"]
    shares = moe["routing"]["mix"]
    assert set(shares) == {"de", "fr", "en"} and len(shares["de"]["layers"]) == 1
    assert all(abs(sum(s["mean"]) - 1) < 1e-3 for s in shares.values())
    assert json.loads((run / "moe" / "mix" / "manifest.json").read_text())["train_tokens"] == 4 * 2 * 32
    bpb = json.loads((run / "eval" / "results.json").read_text())["bpb"]
    assert {"merged", "mix", "cpt-de", "base"} <= set(bpb)
    transfer = json.loads((run / "transfer" / "transfer.json").read_text())
    assert transfer["base"] == "base" and transfer["languages"] == ["de", "fr"] and transfer["change"]["de"]["de"] < 0
    page = (run / "report" / "index.html").read_text(encoding="utf-8")
    assert "Mixture of experts: routing" in page and "Transfer between languages" in page and page.count("data:image/png") >= 3
    # cached: a rerun does nothing; a changed mixture rebuilds only itself
    stamp = (run / "merge" / "merged" / "model.safetensors").stat().st_mtime_ns
    tree = _experts_tree(run)
    tree["moe"]["mix"]["top_k"] = 2
    assert main(["run", write_recipe(tmp_path, tree), "-q"]) == 0
    assert (run / "merge" / "merged" / "model.safetensors").stat().st_mtime_ns == stamp
    assert json.loads((run / "moe" / "mix" / "config.json").read_text())["num_experts_per_tok"] == 2


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_bad_experts_exit_2_before_any_weights_are_written(capsys, tmp_path):
    a = tiny_llama(tmp_path / "a", seed=1)
    odd = {"big": tiny_llama(tmp_path / "big", seed=2, hidden=48), "wide": tiny_llama(tmp_path / "wide", seed=3, vocab=80),
           "other": tiny_llama(tmp_path / "other", seed=4, tokenizer=tiny_tokenizer(shift=1))}
    run = tmp_path / "run"
    tree = tiny_tree(run, langs=("en", "de", "fr"), models={})

    def moe(experts: list[Path], **kw) -> list[str]:
        tree["moe"] = {"mix": {"experts": [str(p) for p in experts], "languages": ["de", "fr"], "top_k": 1, **kw}}
        return ["run", write_recipe(tmp_path, tree), "-q"]

    for name, expect in [("big", "hidden_size: 32 vs 48"), ("wide", "vocab_size: 64 vs 80"), ("other", "different tokenizers")]:
        err = fails_in_one_line(capsys, moe([a, odd[name]]))
        assert expect in err and f"{a} and {odd[name]}" in err, err
        assert not (run / "moe" / "mix").exists() and not list((run / "moe").glob(".*")) if (run / "moe").exists() else True
    tree.pop("moe")
    tree["merge"] = {"m": {"experts": [str(a), str(odd["big"])]}}
    assert "merge 'm'" in fails_in_one_line(capsys, ["run", write_recipe(tmp_path, tree), "-q"])
    assert not (run / "merge" / "m").exists()
    tree.pop("merge")
    # a calibration language without text: the run refuses it before any stage writes weights
    tree["data"]["sources"][0]["languages"] = ["en", "de"]
    err = fails_in_one_line(capsys, moe([a, tiny_llama(tmp_path / "a2", seed=5)]))
    assert "fr" in err and "no documents" in err, err
    assert not (run / "moe" / "mix").exists() and not (run / "moe" / "manifest.json").exists()


def test_moe_check_names_a_calibration_language_without_text(tmp_path):
    from occiforge import runner
    from occiforge.errors import UserError
    from occiforge.experts.build import check_calibration
    from occiforge.experts.common import Source
    from occiforge.recipe import validate_tree

    ctx = runner.make_context(validate_tree(tiny_tree(tmp_path / "run", langs=("en", "de", "fr")), "t"))
    (ctx.stage_dir("data") / "fr" / "train").mkdir(parents=True)
    (ctx.stage_dir("data") / "de" / "train").mkdir(parents=True)
    (ctx.stage_dir("data") / "de" / "train" / "0.jsonl").write_text('{"text": "Guten Tag"}\n')
    experts = [Source("cpt-de", tmp_path, "x"), Source("cpt-fr", tmp_path, "y")]
    check_calibration(ctx, "moe 'mix'", experts[:1], ["de"])
    with pytest.raises(UserError, match="moe 'mix': calibration language 'fr' \\(expert cpt-fr\\) has no training text"):
        check_calibration(ctx, "moe 'mix'", experts, ["de", "fr"])
