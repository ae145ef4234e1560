"""The data and tokenizer stages on the real 24-language corpus in ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from occiforge.cli import main
from occiforge.languages import EU_LANGUAGES


def test_curate_and_train_tokenizer_on_24_languages(shared_data: Path, tmp_path: Path):
    recipe = {
        "name": "shared", "run_dir": str(tmp_path / "run"), "languages": list(EU_LANGUAGES),
        # near-dedup has its own tests and benchmark (benchmarks/bench_dedup.py on this corpus); off
        # here, and two worker processes, to keep the test short
        "data": {"sources": [{"name": "shared", "path": str(shared_data / "mono")}], "near_dedup": {"enabled": False},
                 "executor": {"tasks": 2, "workers": 2}},
        "tokenizer": {"vocab_size": 8000},
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    assert main(["run", str(path), "--to", "tokens", "-q"]) == 0
    stats = json.loads((tmp_path / "run" / "data" / "stats.json").read_text())
    for lang in EU_LANGUAGES:
        row = stats[lang]
        assert row["train_docs"] > 50 and row["heldout_docs"] > 3, lang
        lid_drops = sum(v for k, v in row["dropped"].items() if k.startswith("lid"))
        assert lid_drops <= 0.05 * row["read"], (lang, row["dropped"])  # real text in its own language
    report = json.loads((tmp_path / "run" / "tokenizer" / "report.json").read_text())
    assert report["en"]["tokens_per_word"] < report["el"]["tokens_per_word"] * 1.5
    tokens = json.loads((tmp_path / "run" / "tokens" / "manifest.json").read_text())["per_language"]
    assert all(tokens[lang]["tokens"] > 10_000 for lang in EU_LANGUAGES)
