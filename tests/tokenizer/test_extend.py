"""Continued BPE extension: ids stay stable, new tokens only merge old segmentations further."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from occiforge.errors import UserError
from occiforge.tokenizer.extend import extend, learn_merges, word_counts
from tests.tokenizer.conftest import demo_texts


@pytest.fixture(scope="module")
def greek() -> tuple[list[str], list[str]]:
    docs = demo_texts("el")
    return docs[: len(docs) * 3 // 4], docs[len(docs) * 3 // 4 :]


def test_old_ids_stable_and_new_ids_appended(small_bpe: Tokenizer, greek):
    train, _ = greek
    new, ext = extend(small_bpe, {"el": train}, 60)
    v = small_bpe.get_vocab_size()
    assert ext.base_vocab_size == v and len(ext.added) == 60 and new.get_vocab_size() == v + 60
    vocab = new.get_vocab()
    assert all(vocab[token] == i for token, i in small_bpe.get_vocab().items())
    assert [a["id"] for a in ext.added] == list(range(v, v + 60))
    merges = json.loads(new.to_str())["model"]["merges"]
    assert merges[-60:] == [list(m) for m in ext.merges]
    assert merges[:-60] == json.loads(small_bpe.to_str())["model"]["merges"]


def test_pieces_spell_the_new_token(small_bpe: Tokenizer, greek):
    _, ext = extend(small_bpe, {"el": greek[0]}, 40)
    old = {i: t for t, i in small_bpe.get_vocab().items()}
    for added in ext.added:
        assert all(p < small_bpe.get_vocab_size() for p in added["pieces"])
        assert "".join(old[p] for p in added["pieces"]) == added["token"]


def test_extended_segmentation_refines_the_old_one(small_bpe: Tokenizer, greek):
    """Expanding every new token into its pieces gives back exactly the base tokenization."""
    train, held = greek
    new, ext = extend(small_bpe, {"el": train}, 80)
    pieces = {a["id"]: a["pieces"] for a in ext.added}
    base_ids = small_bpe.encode_batch(held, add_special_tokens=False)
    new_ids = new.encode_batch(held, add_special_tokens=False)
    for b, n in zip(base_ids, new_ids):
        assert [p for i in n.ids for p in pieces.get(i, [i])] == b.ids
        assert new.decode(n.ids) == small_bpe.decode(b.ids)
    assert sum(len(n.ids) for n in new_ids) < 0.85 * sum(len(b.ids) for b in base_ids)


def test_union_extension_serves_every_language(small_bpe: Tokenizer):
    new, ext = extend(small_bpe, {"el": demo_texts("el"), "bg": demo_texts("bg")}, 120)
    texts = {a["text"] for a in ext.added}
    assert any(any("\u0370" <= ch <= "\u03ff" for ch in t) for t in texts)  # Greek
    assert any(any("\u0400" <= ch <= "\u04ff" for ch in t) for t in texts)  # Cyrillic
    for lang in ("el", "bg"):
        doc = demo_texts(lang)[0]
        assert len(new.encode(doc, add_special_tokens=False).ids) < len(small_bpe.encode(doc, add_special_tokens=False).ids)


def test_word_counts_weigh_languages_equally(small_bpe: Tokenizer):
    counts = word_counts(small_bpe, {"a": ["ab ab ab ab"], "b": ["cd"]})  # 11 vs 2 characters
    assert counts["ab"] == 1 and counts["Ġab"] == 3  # the larger language keeps its counts
    assert counts["cd"] == pytest.approx(11 / 2)


def test_merges_are_the_most_frequent_new_pairs(small_bpe: Tokenizer):
    counts = word_counts(small_bpe, {"x": ["zqzq zqzq zqzq zqzq zq"]})
    merges = learn_merges(small_bpe, counts, 5)
    assert merges[0] in {("z", "q"), ("Ġz", "q")} and len(merges) >= 2
    assert all(a + b not in small_bpe.get_vocab() for a, b in merges)


def test_only_bpe_can_be_extended():
    uni = Tokenizer(models.Unigram([("a", -1.0), ("b", -2.0)]))
    uni.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(UserError, match="only BPE tokenizers"):
        extend(uni, {"el": ["ab"]}, 3)
