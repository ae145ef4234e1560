"""Mixture of European Experts on the demo (issue 11): what the demo's merge and mixtures must show,
read from the session's `demo_run` (tests/conftest.py) and, where cheap, recomputed from its
checkpoints. The numbers are in BENCHMARKS.md ("Mixture of European Experts")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

CORE = ["de", "fr", "es", "it"]
EXPERTS = [f"cpt-{lang}" for lang in CORE]


@pytest.fixture(scope="module")
def bpb(demo_run: Path) -> dict[str, dict[str, float]]:
    return json.loads((demo_run / "eval" / "results.json").read_text())["bpb"]


@pytest.mark.parametrize("name", ["moe", "moe-ft"])
def test_mixture_loads_with_transformers_and_generates(demo_run: Path, name: str):
    folder = demo_run / "moe" / name
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    assert type(model).__name__ == "MixtralForCausalLM" and model.config.num_local_experts == 4
    ids = tok("Der Zug fährt", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 8
    assert tok.decode(out[0, ids["input_ids"].shape[1]:]).strip()
    with torch.no_grad():
        assert torch.isfinite(model(**ids).logits).all()


def test_language_routing_sends_each_language_to_its_expert(demo_run: Path):
    from occiforge.experts import router
    from occiforge.io import iter_texts

    manifest = json.loads((demo_run / "moe" / "manifest.json").read_text())
    shares = manifest["routing"]["moe-ft"]
    for i, lang in enumerate(CORE):
        assert shares[lang]["mean"][i] >= 0.9, (lang, shares[lang])
    # the manifest's numbers are the checkpoint's: recompute German's from the saved mixture
    folder = demo_run / "moe" / "moe-ft"
    model, tok = AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    stream = router.token_stream(tok, iter_texts(demo_run / "data", "de", "heldout"), 8192)
    again = router.routing_shares(model, {"de": router.windows(stream, 128)})["de"]
    assert abs(again["mean"][0] - shares["de"]["mean"][0]) < 0.01


def test_brief_training_is_at_most_a_tenth_of_an_expert(demo_run: Path):
    info = json.loads((demo_run / "moe" / "moe-ft" / "manifest.json").read_text())
    assert info["train"] == "all" and 0 < info["train_share_of_expert"] <= 0.1


@pytest.mark.parametrize("lang", CORE)
def test_trained_mixture_is_within_2_percent_of_the_expert(bpb, lang):
    assert bpb["moe-ft"][lang] <= 1.02 * bpb[f"cpt-{lang}"][lang], (bpb["moe-ft"][lang], bpb[f"cpt-{lang}"][lang])


def test_trained_mixture_beats_the_linear_merge_and_the_joint_model_on_three_of_four(bpb):
    wins = [lang for lang in CORE if bpb["moe-ft"][lang] < min(bpb["merged"][lang], bpb["joint"][lang])]
    assert len(wins) >= 3, {lang: (bpb["moe-ft"][lang], bpb["merged"][lang], bpb["joint"][lang]) for lang in CORE}


def test_untrained_mixture_beats_the_linear_merge(bpb):
    assert all(bpb["moe"][lang] < bpb["merged"][lang] for lang in CORE), {m: bpb[m] for m in ("moe", "merged")}


@pytest.mark.parametrize("method,kw", [("linear", {}), ("task_arithmetic", {"weights": [0.4] * 4}),
                                       ("ties", {"weights": [1.0] * 4, "density": 0.2})])
def test_merges_of_the_demo_experts_match_mergekit(demo_run: Path, tmp_path: Path, method: str, kw: dict):
    pytest.importorskip("mergekit")
    from occiforge.experts.merge import merge_folders
    from tests.experts.test_merge import assert_same_tensors, mergekit_merge

    experts = [demo_run / "models" / e for e in EXPERTS]
    base = None if method == "linear" else demo_run / "models" / "base"
    ours = demo_run / "merge" / "merged"  # the demo's own linear merge, as the merge stage wrote it
    if method != "linear":
        merge_folders(method, experts, tmp_path / "o", base, **kw)
        ours = tmp_path / "o"
    assert assert_same_tensors(ours, mergekit_merge(method, experts, tmp_path / "mk", base, **kw)) >= 20


def test_report_shows_routing_and_transfer(demo_run: Path):
    page = (demo_run / "report" / "index.html").read_text(encoding="utf-8")
    assert "Mixture of experts: routing" in page and "Transfer between languages" in page
    assert "<th>moe-ft</th>" in page and "<th>merged</th>" in page
    transfer = json.loads((demo_run / "transfer" / "transfer.json").read_text())
    assert transfer["languages"] == CORE and sorted(lang for g in transfer["groups"] for lang in g) == sorted(CORE)
