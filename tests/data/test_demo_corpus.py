"""The built-in demo corpus meets its brief: every language, sizes, formats, CC0 licence."""

import json
from pathlib import Path

import pytest

from occiforge.data.readers import DEMO_DIR
from occiforge.languages import EU_LANGUAGES

CORE = ("en", "de", "fr", "es", "it")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("lang", EU_LANGUAGES)
def test_corpus_language(lang: str):
    rows = _rows(DEMO_DIR / "corpus" / f"{lang}.jsonl")
    clean = [r for r in rows if "-mislabeled-" not in r["id"] and "-dup-" not in r["id"]]
    size = sum(len(r["text"].encode()) for r in clean)
    assert size >= (40_000 if lang in CORE else 4_000), f"{lang}: {size} bytes"
    assert all(r["lang"] == lang and r["split"] in ("train", "heldout") for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)
    assert any(r["split"] == "heldout" for r in clean) and any(r["split"] == "train" for r in clean)


@pytest.mark.parametrize("lang", CORE)
def test_instructions_and_multiple_choice(lang: str):
    sft = _rows(DEMO_DIR / "sft" / f"{lang}.jsonl")
    assert len(sft) >= 30 and all(r["instruction"].strip() and r["response"].strip() and r["lang"] == lang for r in sft)
    mc = _rows(DEMO_DIR / "demo_qa" / f"{lang}.jsonl")
    assert len(mc) >= 30
    for r in mc:
        assert r["lang"] == lang and len(r["choices"]) == 4 and 0 <= r["answer"] < 4 and r["question"].strip()
    assert len({r["answer"] for r in mc}) == 4  # answers are spread over the positions


def test_licence_is_stated():
    assert "CC0" in (DEMO_DIR / "LICENSE").read_text()


def test_demo_corpus_ships_with_the_package():
    import tomllib

    from tests.conftest import REPO

    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["occiforge"]
    assert any(pattern.startswith("demo/") for pattern in data)
