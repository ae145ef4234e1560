"""Tokenizer fairness metrics per language: tokens, bytes per token, fertility, continued words, parity.

Definitions (all sums over the whole corpus of a language, never means of per-line ratios):

- `bytes_per_token` = UTF-8 bytes / tokens (compression);
- `fertility` = tokens per word, words from `occiforge.tokenizer.words` (UD-style splitter);
- `continued_words` = share of words that span more than one token (Rust et al. 2021);
- `parity` = tokens(lang) / tokens(English) on line-aligned text (Petrov et al. 2023).

Every line is tokenized on its own, in context (no special tokens): a word's tokens are the
tokens whose first non-space character lies inside the word, so the space a byte-level token
carries (`Ġword`, `▁word`) does not count against the next word, and tokens made only of
whitespace belong to no word. Tokenizing in context measures the segmentation a model actually
sees; tokenizing words in isolation (Rust et al.) inflates byte-level BPE fertility because
`word` without its leading space is a rarer token than ` word`.

Parity is summed over lines: for cl100k on the NTREX-128 documents in ../shared/data/mono it
gives de 1.55, fr 1.54, el 5.01, hu 2.17 against Petrov et al.'s FLORES-200 de 1.58, fr 1.60,
el 5.15, hu 2.15 (their code tokenizes the whole corpus and divides totals); a mean of
per-line ratios comes out up to 6% higher on UDHR (el 5.96 vs 5.65, de 1.70 vs 1.66).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from occiforge import languages
from occiforge.errors import UserError
from occiforge.tokenizer.encoders import Encoder
from occiforge.tokenizer.words import word_spans

METRICS = ("tokens", "bytes_per_token", "fertility", "continued_words", "parity")
_WHITESPACE = np.array([c for c in range(0x3001) if chr(c).isspace()], dtype=np.uint32)


@dataclass
class Counts:
    tokens: int = 0
    bytes: int = 0
    words: int = 0
    word_tokens: int = 0  # tokens attributed to a word
    continued: int = 0  # words with more than one token

    def row(self, english_tokens: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tokens": self.tokens,
            "bytes_per_token": round(self.bytes / max(self.tokens, 1), 4),
            "fertility": round(self.word_tokens / max(self.words, 1), 4),
            "continued_words": round(self.continued / max(self.words, 1), 4),
        }
        if english_tokens is not None:
            out["parity"] = round(self.tokens / max(english_tokens, 1), 4)
        return out


@dataclass
class Text:
    """A language's texts joined with newlines, its words and whitespace map: computed once,
    measured against any number of tokenizers."""

    texts: list[str]
    lang: str
    spans: np.ndarray  # (words, 2) character offsets into the joined text
    next_solid: np.ndarray  # for each character, the first non-space character at or after it
    shifts: list[int]  # where each text starts in the joined text
    bytes: int

    @classmethod
    def of(cls, texts: list[str], lang: str) -> Text:
        texts = [t for t in texts if t]
        joined = "\n".join(texts)
        spans = np.asarray(word_spans(joined, lang), dtype=np.int64).reshape(-1, 2)
        cps = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
        pos = np.where(np.isin(cps, _WHITESPACE), len(cps), np.arange(len(cps)))
        next_solid = np.append(np.minimum.accumulate(pos[::-1])[::-1], len(cps)) if len(cps) else np.zeros(1, np.int64)
        shifts = np.cumsum([0] + [len(t) + 1 for t in texts[:-1]]).tolist() if texts else []
        return cls(texts, lang, spans, next_solid, shifts, sum(len(t.encode()) for t in texts))


def count(encoder: Encoder, texts: list[str] | Text, lang: str | None = None) -> Counts:
    """Token, byte and word counts of a language's texts, each text tokenized on its own."""
    text = texts if isinstance(texts, Text) else Text.of(texts, lang or "und")
    per_text = encoder.token_starts(text.texts)
    c = Counts(tokens=sum(map(len, per_text)), bytes=text.bytes, words=len(text.spans))
    if not c.tokens or not c.words:
        return c
    # a token ends where the next one starts (or its text ends); texts are joined with "\n"
    ends = [np.maximum(np.append(s[1:], len(t)), s + 1) + shift for t, s, shift in zip(text.texts, per_text, text.shifts)]
    starts = np.concatenate([s + shift for s, shift in zip(per_text, text.shifts)])
    anchor = text.next_solid[np.minimum(starts, len(text.next_solid) - 1)]
    word = np.searchsorted(text.spans[:, 0], anchor, side="right") - 1
    ok = (anchor < np.concatenate(ends)) & (word >= 0)
    ok[ok] &= anchor[ok] < text.spans[word[ok], 1]
    per_word = np.bincount(word[ok], minlength=len(text.spans))
    c.word_tokens, c.continued = int(per_word.sum()), int((per_word > 1).sum())
    return c


def _read_lines(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: not valid UTF-8") from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines


def read_parallel(folder: str | Path, langs: list[str] | None = None) -> dict[str, list[str]]:
    """`<lang>.txt` files with aligned lines; English must be there and every count must match."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: parallel folder not found")
    files = {p.stem: p for p in sorted(folder.glob("*.txt")) if languages.is_known(p.stem)}
    if "en" not in files:
        raise UserError(f"{folder / 'en.txt'}: missing; parity is measured against English")
    wanted = sorted(set(langs or files) | {"en"})
    if missing := [lang for lang in wanted if lang not in files]:
        raise UserError(f"{folder / (missing[0] + '.txt')}: missing from the parallel folder")
    texts = {lang: _read_lines(files[lang]) for lang in wanted}
    n_en = len(texts["en"])
    for lang, lines in texts.items():
        if len(lines) != n_en:
            raise UserError(f"{files[lang]}: {len(lines)} lines but en.txt has {n_en}; parallel files must be line-aligned")
    return texts


def read_mono(folder: str | Path, langs: list[str] | None = None, max_bytes: int = 1_000_000) -> dict[str, list[str]]:
    """Up to `max_bytes` of text per language from `<lang>.jsonl` ("text" field) or `<lang>.txt`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: mono folder not found")
    out: dict[str, list[str]] = {}
    for path in sorted(folder.iterdir()):
        lang, suffix = path.name.split(".", 1)[0], "".join(path.suffixes)
        if suffix not in (".jsonl", ".txt") or not languages.is_known(lang) or (langs and lang not in langs):
            continue
        docs, size = [], 0
        for i, line in enumerate(_read_lines(path), 1):
            if suffix == ".jsonl" and line.strip():
                try:
                    line = json.loads(line)["text"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise UserError(f"{path}: line {i}: expected a JSON object with a 'text' field") from None
            docs.append(line)
            size += len(line.encode())
            if size >= max_bytes:
                break
        out[lang] = docs
    return out


def prepare(texts: dict[str, list[str]]) -> dict[str, Text]:
    """Split every language's texts into words once, to measure several tokenizers on them."""
    return {lang: Text.of(lines, lang) for lang, lines in texts.items()}


def measure_parallel(encoder: Encoder, texts: dict[str, list[str]] | dict[str, Text]) -> dict[str, dict[str, Any]]:
    """Per-language rows with parity against the aligned English text."""
    counts = {lang: count(encoder, lines, lang) for lang, lines in texts.items()}
    return {lang: c.row(counts["en"].tokens) for lang, c in sorted(counts.items())}


def measure_texts(encoder: Encoder, texts: dict[str, list[str]] | dict[str, Text]) -> dict[str, dict[str, Any]]:
    """Per-language rows without parity (monolingual text is not aligned)."""
    return {lang: count(encoder, docs, lang).row() for lang, docs in sorted(texts.items())}
