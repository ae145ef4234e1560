"""Train a byte-level tokenizer with HF `tokenizers` on a per-language sample of the corpus.

Language shares follow temperature sampling: share_l ∝ weight_l * size_l ** alpha (alpha=1
keeps the natural proportions, alpha=0 gives every language the same amount; the weights come
from parity balancing, `tokenizer.balance`). Sizes count characters by default, so languages
in two-byte scripts (Greek, Bulgarian) are not starved. The sample is as large as needed for
every language to be used whole at least once (smaller languages are repeated up to their
share), capped at `max_bytes`; only where the cap binds are documents dropped, at random.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from occiforge.lm import BOS, EOS, PAD
from occiforge.recipe import TokenizerConfig

SPECIAL_TOKENS = [PAD, BOS, EOS]


def sampling_shares(sizes: dict[str, int], alpha: float, weights: dict[str, float] | None = None) -> dict[str, float]:
    w = {lang: (weights or {}).get(lang, 1.0) * (float(size) ** alpha if size > 0 else 0.0) for lang, size in sizes.items()}
    total = sum(w.values())
    return {lang: v / total for lang, v in w.items()}


def _unit(balance_by: str) -> Callable[[str], int]:
    return (lambda t: len(t.encode())) if balance_by == "bytes" else len  # "chars" and "parity"


def sample_texts(texts: dict[str, list[str]], cfg: TokenizerConfig, weights: dict[str, float] | None = None) -> Iterator[str]:
    """Yield each language's texts (in a seeded random order), repeated or cut to its share."""
    unit = _unit(cfg.balance_by)
    sizes = {lang: sum(map(unit, docs)) for lang, docs in texts.items()}
    shares = sampling_shares(sizes, cfg.sampling_alpha, weights)
    # large enough that the language with the smallest share/size ratio is used whole once
    budget = min(cfg.max_bytes, max((sizes[lang] / shares[lang] for lang in sizes if shares[lang] > 0), default=0.0))
    for lang, docs in texts.items():
        order = random.Random(f"tokenizer-sample/{lang}").sample(range(len(docs)), len(docs))
        target, taken, i = shares[lang] * budget, 0, 0
        while docs and taken < target:
            doc = docs[order[i % len(docs)]]
            yield doc
            taken += unit(doc)
            i += 1


def new_tokenizer(kind: str) -> Tokenizer:
    tok = Tokenizer(models.BPE() if kind == "bpe" else models.Unigram())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig) -> Tokenizer:
    tok = new_tokenizer(cfg.kind)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if cfg.kind == "bpe":
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
            special_tokens=SPECIAL_TOKENS, initial_alphabet=alphabet, show_progress=False,
        )
    else:
        trainer = trainers.UnigramTrainer(
            vocab_size=cfg.vocab_size, special_tokens=SPECIAL_TOKENS,
            initial_alphabet=alphabet, show_progress=False,
        )
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos)])
    return tok


def save_hf(tok: Tokenizer, folder: Path) -> PreTrainedTokenizerFast:
    """Save as a HF tokenizer folder (tokenizer.json + config) loadable by AutoTokenizer."""
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)
    fast.save_pretrained(str(folder))
    return fast
