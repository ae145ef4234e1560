"""Extend a BPE tokenizer with tokens learned on target-language text; existing ids never move.

Continued BPE training: the target text is cut into words by the base tokenizer's own
normalizer and pre-tokenizer, each word is segmented by the base model, and the most frequent
adjacent pair whose concatenation is not yet a token is merged, again and again, exactly as
BPE training would have continued. The new merges are appended after the old ones (lowest
priority) and the new tokens after the last id, so a text segments as before and then merges
further: ids 0..V-1 keep their meaning and the new ones are V..V+N-1.

Why hand-written: `tokenizers`' trainers cannot start from existing merges. The usual
workaround, training a separate BPE on the target text and appending its unseen merges, adds
tokens the base segmentation rarely reaches: extending a 4k demo-style tokenizer by 1,000
Greek tokens that way left 28% of them unused on held-out Greek and saved 30.1% of Greek
tokens, where continued training (this module, under a second) left 15% unused and saved
36.5% (benchmarks/bench_tokenizer.py, BENCHMARKS.md "Tokenizer").

Several languages can share one extension (their word counts are scaled so that every
language weighs the same in characters), so that experts trained on different languages keep
one vocabulary and can be merged or mixed later.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import regex
from tokenizers import Tokenizer

from occiforge.errors import UserError

_METASPACE = regex.compile(r"▁*[^▁]+|▁+")
_BYTE_FALLBACK = regex.compile(r"^<0x[0-9A-Fa-f]{2}>$")


@dataclass
class Extension:
    """What was added: merges in order, and per new token its id, string and base-token pieces."""

    base_vocab_size: int
    merges: list[tuple[str, str]] = field(default_factory=list)
    added: list[dict[str, Any]] = field(default_factory=list)


def _words(tok: Tokenizer, text: str) -> list[str]:
    norm = tok.normalizer.normalize_str(text) if tok.normalizer else text
    if tok.pre_tokenizer is not None:
        return [w for w, _ in tok.pre_tokenizer.pre_tokenize_str(norm)]
    # sentencepiece-style tokenizers (Llama, Mistral) have no pre-tokenizer: words start at ▁
    return _METASPACE.findall(norm)


def word_counts(tok: Tokenizer, texts: dict[str, list[str]]) -> Counter[str]:
    """Pre-tokenized word frequencies, each language scaled to the same number of characters."""
    sizes = {lang: sum(map(len, docs)) for lang, docs in texts.items()}
    target = max(sizes.values(), default=0)
    total: Counter[str] = Counter()
    for lang, docs in texts.items():
        counts: Counter[str] = Counter()
        for doc in docs:
            counts.update(_words(tok, doc))
        scale = target / max(sizes[lang], 1)
        for word, n in counts.items():
            total[word] += n * scale
    return total


def _merge_word(seq: list[str], a: str, b: str) -> list[str]:
    out, i = [], 0
    while i < len(seq):
        if i + 1 < len(seq) and seq[i] == a and seq[i + 1] == b:
            out.append(a + b)
            i += 2
        else:
            out.append(seq[i])
            i += 1
    return out


def learn_merges(tok: Tokenizer, counts: Counter[str], n_new: int, min_frequency: float = 2.0) -> list[tuple[str, str]]:
    """Continue BPE training from `tok` on word counts: up to `n_new` merges, each a new token."""
    vocab = set(tok.get_vocab(with_added_tokens=True))
    skip = set(tok.get_vocab(with_added_tokens=True)) - set(tok.get_vocab(with_added_tokens=False))
    fallback = json.loads(tok.to_str())["model"].get("byte_fallback", False)
    seqs = [[t.value for t in tok.model.tokenize(word)] for word in counts]
    freqs = list(counts.values())
    pairs: dict[tuple[str, str], float] = defaultdict(float)
    where: dict[tuple[str, str], set[int]] = defaultdict(set)

    def account(i: int, sign: int) -> set[tuple[str, str]]:
        seq = seqs[i]
        touched = set(zip(seq, seq[1:]))
        for pair in zip(seq, seq[1:]):
            pairs[pair] += sign * freqs[i]
        for pair in touched:
            (where[pair].add if sign > 0 else where[pair].discard)(i)
        return touched

    for i in range(len(seqs)):
        account(i, +1)
    heap = [(-c, p) for p, c in pairs.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while heap and len(merges) < n_new:
        neg, pair = heapq.heappop(heap)
        current = pairs.get(pair, 0.0)
        if abs(current + neg) > 1e-9:  # stale entry: its count changed since it was pushed
            if current > 0:
                heapq.heappush(heap, (-current, pair))
            continue
        if current < min_frequency:
            break
        a, b = pair
        if a + b in vocab or {a, b} & skip or (fallback and (_BYTE_FALLBACK.match(a) or _BYTE_FALLBACK.match(b))):
            continue
        merges.append(pair)
        vocab.add(a + b)
        touched: set[tuple[str, str]] = set()
        for i in list(where[pair]):
            account(i, -1)
            seqs[i] = _merge_word(seqs[i], a, b)
            touched |= account(i, +1)
        for p in touched:
            if pairs[p] > 0:
                heapq.heappush(heap, (-pairs[p], p))
    return merges


def _bpe_spec(tok: Tokenizer) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(tok.to_str())
    if spec["model"].get("type") != "BPE":
        raise UserError(f"tokenizer.extend: only BPE tokenizers can be extended (this one is {spec['model'].get('type')})")
    return spec


def apply_merges(tok: Tokenizer, merges: list[tuple[str, str]]) -> tuple[Tokenizer, Extension]:
    """A copy of `tok` with the merges appended and their tokens given ids after the last one."""
    spec = _bpe_spec(tok)
    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    ext = Extension(base_vocab_size=tok.get_vocab_size(with_added_tokens=True))
    next_id = max([*vocab.values(), *(t["id"] for t in spec.get("added_tokens", []))]) + 1
    pieces: dict[str, list[int]] = {}
    for a, b in merges:
        token = a + b
        vocab[token] = next_id
        pieces[token] = pieces.get(a, [vocab[a]]) + pieces.get(b, [vocab[b]])
        text = tok.decoder.decode([token]) if tok.decoder else token
        ext.added.append({"id": next_id, "token": token, "text": text, "pieces": pieces[token]})
        next_id += 1
    old = [m if isinstance(m, list) else m.split(" ", 1) for m in model["merges"]]
    model["merges"] = old + [[a, b] for a, b in merges]
    ext.merges = list(merges)
    return Tokenizer.from_str(json.dumps(spec)), ext


def extend(tok: Tokenizer, texts: dict[str, list[str]], n_new: int, min_frequency: float = 2.0) -> tuple[Tokenizer, Extension]:
    """Learn up to `n_new` tokens on `texts` (language -> documents) and append them to `tok`."""
    _bpe_spec(tok)  # fail before the (long) learning
    merges = learn_merges(tok, word_counts(tok, texts), n_new, min_frequency)
    return apply_merges(tok, merges)
