"""The demo recipe end to end, and the three claims it must show, read from its outputs.

Uses the session's `demo_run` (tests/conftest.py: `occiforge run recipes/demo.yaml` as a user
would, a few minutes on 2 cores, once per session) and `demo_ablation_run`, a copy of it with the
replay ablation added through --set: one more bilingual model, for German, with replay 0 (trained
and scored; the ablation run stops after eval).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

CORE = ["de", "fr", "es", "it"]


@pytest.fixture(scope="module")
def bpb(demo_ablation_run: Path) -> dict[str, dict[str, float]]:
    return json.loads((demo_ablation_run / "eval" / "results.json").read_text())["bpb"]


@pytest.mark.parametrize("lang", CORE)
def test_bilingual_model_beats_base_on_its_language(bpb, lang):
    assert bpb[f"cpt-{lang}"][lang] < bpb["base"][lang] - 0.5, (bpb[f"cpt-{lang}"][lang], bpb["base"][lang])


@pytest.mark.parametrize("lang", ["en", *CORE])
def test_joint_model_beats_base_on_all_five(bpb, lang):
    assert bpb["joint"][lang] < bpb["base"][lang], (bpb["joint"][lang], bpb["base"][lang])


def test_english_replay_keeps_english(bpb):
    with_replay, without = bpb["cpt-de"]["en"], bpb["cpt0-de"]["en"]
    assert with_replay < without, (with_replay, without)
    assert bpb["cpt0-de"]["de"] < bpb["base"]["de"]  # the ablation did learn German


def test_every_language_is_scored(bpb):
    from occiforge.languages import EU_LANGUAGES

    assert set(bpb["base"]) == set(EU_LANGUAGES)


def test_checkpoints_load_with_transformers(demo_run: Path):
    folder = demo_run / "models" / "joint"
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok("Der Zug fährt", return_tensors="pt")
    assert ids["input_ids"][0, 0].item() == tok.bos_token_id
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 5
    with torch.no_grad():
        assert torch.isfinite(model(**ids).logits).all()


def test_data_stage_dropped_the_planted_noise(demo_run: Path):
    stats = json.loads((demo_run / "data" / "stats.json").read_text())
    for lang in ["en", *CORE]:
        assert stats[lang]["dropped"] == {"lid_mismatch": 1, "duplicate": 1}, lang


def test_report_shows_the_table_and_plots(demo_run: Path):
    page = (demo_run / "report" / "index.html").read_text(encoding="utf-8")
    for model in json.loads((demo_run / "eval" / "results.json").read_text())["bpb"]:
        assert f"<th>{model}</th>" in page
    chart = re.search(r'<img src="data:image/png;base64,([^"]+)" alt="bits per byte per language and model">', page)
    assert chart and len(chart.group(1)) > 10_000  # the chart is inlined: the page is one self-contained file


def test_every_stage_has_a_manifest(demo_run: Path):
    for stage in ("data", "tokenizer", "tokens", "models", "eval", "report", "release"):
        manifest = json.loads((demo_run / stage / "manifest.json").read_text())
        assert manifest["fingerprint"] and manifest["stage"]
    assert (demo_run / "recipe.resolved.yaml").is_file()
