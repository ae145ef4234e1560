"""Generation tasks: greedy translation scored with sacrebleu's chrF, per target language."""

from __future__ import annotations

import json

import pytest
import sacrebleu

from occiforge.cli import main
from occiforge.errors import UserError
from occiforge.eval.generate import generate, read_pairs, score_translation
from occiforge.eval.suite import load

from .test_tasks import write_jsonl

PAIRS = [
    {"source": "The cat sleeps.", "target": "Die Katze schläft.", "lang": "de"},
    {"source": "Good morning.", "target": "Guten Morgen.", "lang": "de"},
    {"source": "The cat sleeps.", "target": "Le chat dort.", "lang": "fr", "source_lang": "en"},
]


def test_translation_is_scored_with_chrf_per_language(tiny_model, tmp_path):
    pairs = read_pairs(write_jsonl(tmp_path / "mt.jsonl", PAIRS))
    assert pairs[0].prompt() == "English: The cat sleeps.\nGerman:"
    model, tok = load(str(tiny_model), "cpu")
    hyps = generate(model, tok, [p.prompt() for p in pairs], max_new_tokens=12, batch_size=2)
    assert len(hyps) == 3 and all("\n" not in h for h in hyps)
    assert hyps == generate(model, tok, [p.prompt() for p in pairs], max_new_tokens=12, batch_size=3)  # padding-proof
    scores = score_translation(model, tok, pairs, max_new_tokens=12, batch_size=2)
    assert scores["de"] == {"chrf": pytest.approx(sacrebleu.corpus_chrf(hyps[:2], [[PAIRS[0]["target"], PAIRS[1]["target"]]]).score), "n": 2}
    assert scores["fr"]["n"] == 1


def test_gen_flag_adds_a_gen_table(tiny_model, tmp_path):
    out = tmp_path / "r.json"
    assert main(["eval", "--model", str(tiny_model), "--gen", str(write_jsonl(tmp_path / "mt.jsonl", PAIRS)), "--output", str(out)]) == 0
    assert set(json.loads(out.read_text())["gen"]["translation"]) == {"de", "fr"}


def test_bad_pairs_name_file_and_line(tmp_path):
    with pytest.raises(UserError, match=r"mt.jsonl:2: expected non-empty strings"):
        read_pairs(write_jsonl(tmp_path / "mt.jsonl", [PAIRS[0], {"source": "x", "lang": "de"}]))
