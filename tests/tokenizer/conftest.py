"""Tiny tokenizers and parallel folders for the tokenizer tests (built from the demo corpus)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from occiforge.recipe import TokenizerConfig
from occiforge.tokenizer.train import sample_texts, train_tokenizer
from tests.conftest import REPO

CORPUS = REPO / "occiforge" / "demo" / "corpus"


def demo_texts(lang: str) -> list[str]:
    return [json.loads(line)["text"] for line in (CORPUS / f"{lang}.jsonl").open(encoding="utf-8")]


@pytest.fixture(scope="session")
def small_bpe() -> Tokenizer:
    """A 400-token byte-level BPE on the demo's en, de and el text (trains in well under a second)."""
    texts = {lang: demo_texts(lang) for lang in ("en", "de", "el")}
    cfg = TokenizerConfig(vocab_size=400)
    return train_tokenizer(sample_texts(texts, cfg), cfg)


def write_parallel(folder: Path, lines: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for lang, rows in lines.items():
        (folder / f"{lang}.txt").write_text("".join(f"{r}\n" for r in rows), encoding="utf-8")
    return folder
