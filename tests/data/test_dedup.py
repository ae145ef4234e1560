"""Exact dedup is global whatever the number of tasks; MinHash near-dedup is per language, keeps
the copy of the highest-priority source, and runs before the held-out split."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from datatrove.pipeline.dedup.minhash import MinhashConfig

from occiforge.cli import main
from occiforge.data.dedup import DedupSignatures, exact_key
from occiforge.data.readers import DEMO_DIR
from tests.data.helpers import read_out, recipe, stats, write_jsonl


def _demo(lang: str) -> list[dict]:
    recs = [json.loads(line) for line in (DEMO_DIR / "corpus" / f"{lang}.jsonl").read_text().splitlines()]
    seen, out = set(), []
    for r in recs:  # the planted noise out: unique texts in the file's language only
        if r["text"] not in seen and r.get("lang", lang) == lang:
            seen.add(r["text"])
            out.append({"id": r["id"], "text": r["text"]})
    return out


def near_copy(text: str, rng: random.Random, edits: int = 2) -> str:
    """A few words changed: what boilerplate-different copies of one article look like."""
    words = text.split()
    for _ in range(edits):
        words[rng.randrange(len(words))] = rng.choice(["und", "auch", "heute", "dort"])
    return " ".join(words)


def jaccard(a: str, b: str, n: int = 5) -> float:
    def grams(t: str) -> set:
        w = t.lower().split()
        return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}

    ga, gb = grams(a), grams(b)
    return len(ga & gb) / max(1, len(ga | gb))


@pytest.mark.slow
def test_near_copies_are_removed_before_the_split(tmp_path: Path):
    """The issue's case: 12 documents plus 24 near-copies; all 36 were kept and the held-out
    documents were copies of training ones. Now 12 are kept and no pair crosses the split."""
    rng = random.Random(0)
    base = _demo("de")[:12]
    copies = [{"id": f"copy{i}", "text": near_copy(d["text"], rng)} for i, d in enumerate(base * 2)]
    write_jsonl(tmp_path / "c" / "de.jsonl", base + copies)
    r = recipe(tmp_path, [{"name": "web", "path": str(tmp_path / "c")}], ["de"], heldout_fraction=0.3, executor={"tasks": 2})
    assert main(["data", "-q", "-c", str(r)]) == 0
    row = stats(tmp_path / "run")["de"]
    assert row["kept"] == 12 and row["dropped"] == {"near_duplicate": 24}
    train, held = read_out(tmp_path / "run", "de", "train"), read_out(tmp_path / "run", "de", "heldout")
    assert held and max(jaccard(a["text"], b["text"]) for a in train for b in held) < 0.5


@pytest.mark.slow
def test_exact_dedup_is_global_across_tasks_and_keeps_the_high_priority_copy(tmp_path: Path):
    docs = _demo("fr")[:10]
    # the high-priority source's copy lands in task 1, the low-priority one in task 0
    write_jsonl(tmp_path / "wiki" / "h0.jsonl", [{**d, "lang": "fr"} for d in docs[:5]])
    write_jsonl(tmp_path / "wiki" / "h1.jsonl", [{**d, "lang": "fr"} for d in docs[5:]])
    write_jsonl(tmp_path / "web" / "fr.jsonl", [{**d, "id": "w" + d["id"]} for d in docs[3:8]])
    sources = [{"name": "web", "path": str(tmp_path / "web"), "priority": 1},
               {"name": "wiki", "path": str(tmp_path / "wiki"), "glob": "h*.jsonl", "priority": 5}]
    r = recipe(tmp_path, sources, ["fr"], executor={"tasks": 2}, near_dedup={"enabled": False})
    assert main(["data", "-q", "-c", str(r)]) == 0
    kept = read_out(tmp_path / "run", "fr")
    assert stats(tmp_path / "run")["fr"]["dropped"] == {"duplicate": 5}
    assert len(kept) == 10 and {d["metadata"]["source"] for d in kept} == {"wiki"}


@pytest.mark.slow
def test_near_dedup_keeps_the_high_priority_copy(tmp_path: Path):
    rng = random.Random(1)
    docs = _demo("it")[:8]
    write_jsonl(tmp_path / "web" / "it.jsonl", [{"id": f"w{i}", "text": near_copy(d["text"], rng)} for i, d in enumerate(docs)])
    write_jsonl(tmp_path / "wiki" / "it.jsonl", docs)
    sources = [{"name": "web", "path": str(tmp_path / "web"), "priority": 1}, {"name": "wiki", "path": str(tmp_path / "wiki"), "priority": 9}]
    r = recipe(tmp_path, sources, ["it"], executor={"tasks": 2})
    assert main(["data", "-q", "-c", str(r)]) == 0
    kept = read_out(tmp_path / "run", "it")
    assert len(kept) == 8 and {d["metadata"]["source"] for d in kept} == {"wiki"}
    assert stats(tmp_path / "run")["it"]["dropped"] == {"near_duplicate": 8}


def test_signatures_and_exact_keys_are_per_language(tmp_path: Path):
    text = "Hotel Europa Bar Restaurant Taxi Radio Pizza Pasta Cafe Bistro Kiosk Musik"
    step = DedupSignatures(str(tmp_path), MinhashConfig(), ["de", "nl"])
    sig = {lang: np.array(step.get_signature(step.shingles(text, lang))) for lang in ("de", "nl")}
    assert not (sig["de"] == sig["nl"]).all(axis=1).any()  # no LSH bucket in common
    assert exact_key("de", text) != exact_key("nl", text) and exact_key("de", text) == exact_key("de", text.replace(" ", "  "))
