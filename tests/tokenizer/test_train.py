"""Per-language sampling and parity-balanced training."""

from __future__ import annotations

import math
from collections import Counter

import pytest

import occiforge.tokenizer.balance as balance
from occiforge.recipe import TokenizerConfig
from occiforge.tokenizer.balance import reweight, train_parity_balanced
from occiforge.tokenizer.train import sample_texts, sampling_shares, train_tokenizer
from tests.tokenizer.conftest import demo_texts


def test_shares_follow_temperature_and_weights():
    sizes = {"en": 400, "el": 100}
    assert sampling_shares(sizes, 1.0) == pytest.approx({"en": 0.8, "el": 0.2})
    assert sampling_shares(sizes, 0.0) == pytest.approx({"en": 0.5, "el": 0.5})
    assert sampling_shares(sizes, 0.5, {"el": 2.0}) == pytest.approx({"en": 0.5, "el": 0.5})


@pytest.mark.parametrize("balance_by", ["chars", "bytes"])
def test_sample_uses_every_language_whole_and_balances(balance_by: str):
    texts = {"en": [f"english {i} " * 20 for i in range(30)], "el": [f"ελληνικά {i} " * 20 for i in range(10)]}
    cfg = TokenizerConfig(sampling_alpha=0.0, balance_by=balance_by)
    sample = list(sample_texts(texts, cfg))
    counts = Counter(sample)
    assert set(counts) == set(texts["en"]) | set(texts["el"])  # nothing dropped
    unit = len if balance_by == "chars" else (lambda t: len(t.encode()))
    en = sum(unit(t) for t in sample if t.startswith("english"))
    el = sum(unit(t) for t in sample if t.startswith("ελληνικά"))
    assert el / en == pytest.approx(1.0, rel=0.1)  # alpha 0: the same amount of each language


def test_max_bytes_caps_the_sample():
    texts = {"en": ["x" * 100] * 50, "de": ["y" * 100] * 50}
    sample = list(sample_texts(texts, TokenizerConfig(max_bytes=1000)))
    assert 1000 <= sum(map(len, sample)) <= 1200


def test_reweight_raises_languages_above_the_target_and_lowers_the_reference():
    parity = {"en": 1.0, "de": 1.1, "el": 1.6, "bg": 1.3}
    w = reweight({"en": 1.0, "de": 1.0, "el": 1.0, "bg": 2.0}, parity, target=1.2, step=2.0)
    gmean = math.prod(parity.values()) ** 0.25
    assert w["el"] == pytest.approx((1.6 / 1.2) ** 2) and w["bg"] == pytest.approx(2.0 * (1.3 / 1.2) ** 2)
    assert w["en"] == pytest.approx((1 / gmean) ** 2) and w["en"] < 1
    assert w["de"] == 1.0  # at or below the target: left alone, not pushed down


def test_parity_balancing_lowers_the_worst_parity(monkeypatch: pytest.MonkeyPatch):
    langs = ("en", "de", "el")
    texts = {lang: demo_texts(lang) for lang in langs}
    dev = {lang: texts[lang][-8:] for lang in langs}  # stand-in for aligned text: the code path is the same
    texts = {lang: docs[:-8] for lang, docs in texts.items()}
    monkeypatch.setattr(balance, "MAX_FERTILITY_LOSS", 1.0)  # tiny vocabularies move fertility a lot
    cfg = TokenizerConfig(vocab_size=500, balance_by="parity", parallel="unused", parity_rounds=3, sampling_alpha=1.0, parity_target=1.0)
    tok, history = train_parity_balanced(texts, cfg, dev)
    assert 1 <= len(history) <= 3 and history[0]["weights"] == {lang: 1.0 for lang in langs}
    worst = [h["worst_parity"] for h in history]
    assert min(worst) < worst[0]
    assert len(history) > 1 and history[-1]["weights"]["en"] < 1.0
    assert max(history[-1]["weights"], key=history[-1]["weights"].get) == history[0]["worst"]
    assert tok.get_vocab_size() == 500


def test_parity_balancing_stops_when_a_language_is_harmed(monkeypatch: pytest.MonkeyPatch):
    texts = {lang: demo_texts(lang) for lang in ("en", "de", "el")}
    monkeypatch.setattr(balance, "_harmed", lambda fertility, first: [] if fertility is first else ["de"])
    cfg = TokenizerConfig(vocab_size=400, balance_by="parity", parallel="unused", parity_rounds=4, parity_target=1.0)
    _, history = train_parity_balanced(texts, cfg, {lang: docs[:5] for lang, docs in texts.items()})
    assert [h["accepted"] for h in history] == [True, False]


def test_harmed_ignores_the_reference_language():
    first = {"en": 1.0, "de": 2.0, "el": 3.0}
    assert balance._harmed({"en": 2.0, "de": 2.0, "el": 3.0}, first) == []
    assert balance._harmed({"en": 1.0, "de": 2.2, "el": 3.1}, first) == ["de"]


def test_parity_balancing_stops_at_the_target():
    texts = {lang: demo_texts(lang) for lang in ("en", "de")}
    cfg = TokenizerConfig(vocab_size=400, balance_by="parity", parallel="unused", parity_rounds=4, parity_target=5.0)
    _, history = train_parity_balanced(texts, cfg, {lang: docs[:5] for lang, docs in texts.items()})
    assert len(history) == 1 and history[0]["worst_parity"] <= 5.0


def test_unigram_option_trains_a_byte_level_model():
    texts = {lang: demo_texts(lang) for lang in ("en", "el")}
    cfg = TokenizerConfig(kind="unigram", vocab_size=400)
    tok = train_tokenizer(sample_texts(texts, cfg), cfg)
    assert tok.get_vocab_size() == 400 and '"type":"Unigram"' in tok.to_str().replace(" ", "")
    doc = texts["el"][0]
    assert tok.decode(tok.encode(doc, add_special_tokens=False).ids) == doc
