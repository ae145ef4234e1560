"""Train a byte-level tokenizer with HF `tokenizers` on a per-language sample of the corpus.

Language shares follow temperature sampling: share_l ∝ size_l ** alpha (alpha=1 keeps the
natural proportions, alpha=0 gives every language the same amount). Sizes count characters
by default, so languages in two-byte scripts (Greek, Bulgarian) are not starved.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from occiforge.recipe import TokenizerConfig

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIAL_TOKENS = [PAD, BOS, EOS]


def sampling_shares(sizes: dict[str, int], alpha: float) -> dict[str, float]:
    weights = {lang: float(size) ** alpha if size > 0 else 0.0 for lang, size in sizes.items()}
    total = sum(weights.values())
    return {lang: w / total for lang, w in weights.items()}


def sample_texts(texts: dict[str, list[str]], cfg: TokenizerConfig) -> Iterator[str]:
    """Yield each language's texts, cycled or cut to its share of the sample budget."""
    unit = (lambda t: len(t)) if cfg.balance_by == "chars" else (lambda t: len(t.encode()))
    sizes = {lang: sum(map(unit, docs)) for lang, docs in texts.items()}
    shares = sampling_shares(sizes, cfg.sampling_alpha)
    budget = min(cfg.max_bytes, sum(sizes.values()))
    for lang, docs in texts.items():
        target, taken, i = shares[lang] * budget, 0, 0
        while docs and taken < target:
            doc = docs[i % len(docs)]
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
