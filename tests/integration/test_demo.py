"""The demo recipe end to end, and the three claims it must show, read from its outputs.

Runs `occiforge run recipes/demo.yaml` as a user would (a few minutes on 2 cores), then the
replay ablation through --set: one more bilingual model, for German, with replay 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.conftest import REPO

CORE = ["de", "fr", "es", "it"]
ABLATION = ["--set", "models.cpt0.init=base", "--set", "models.cpt0.targets=[de]", "--set", "models.cpt0.replay=0"]


def _occiforge(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "occiforge.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("demo") / "run"
    _occiforge("run", "recipes/demo.yaml", "-q", "--set", f"run_dir={run}")
    _occiforge("run", "recipes/demo.yaml", "-q", "--set", f"run_dir={run}", *ABLATION)
    return run


@pytest.fixture(scope="module")
def bpb(demo_run: Path) -> dict[str, dict[str, float]]:
    return json.loads((demo_run / "eval" / "results.json").read_text())["bpb"]


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


def test_report_shows_the_table_and_plots(demo_run: Path, bpb):
    page = (demo_run / "report" / "index.html").read_text(encoding="utf-8")
    for model in bpb:
        assert f"<th>{model}</th>" in page
    assert (demo_run / "report" / "bpb.png").stat().st_size > 10_000
    assert 'src="bpb.png"' in page


def test_every_stage_has_a_manifest(demo_run: Path):
    for stage in ("data", "tokenizer", "tokens", "models", "eval", "report"):
        manifest = json.loads((demo_run / stage / "manifest.json").read_text())
        assert manifest["fingerprint"] and manifest["stage"]
    assert (demo_run / "recipe.resolved.yaml").is_file()
