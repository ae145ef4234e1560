"""Multiple-choice items and their JSONL format, checked line by line.

One JSON object per line: `question` and/or `context`, `choices` (non-empty strings),
`answer` (0-based index), `lang` (ISO 639-1), optional `id` and, for mc2-style tasks
(TruthfulQA), `labels` (1 for every true choice). This is the format of ../shared/data/mc.
A file named `<lang>.jsonl` holds that one language only. Every problem is a one-line
UserError naming file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from occiforge import languages
from occiforge.errors import UserError
from occiforge.io import iter_jsonl_at


@dataclass(frozen=True)
class Item:
    id: str
    lang: str
    choices: tuple[str, ...]
    answer: int
    question: str | None = None
    context: str | None = None
    labels: tuple[int, ...] | None = None  # mc2: which choices are true
    where: str = ""  # "file:line", for error messages
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def file_language(path: Path) -> str | None:
    """The language a file is named for (`de.jsonl` -> "de"), or None."""
    stem = path.name.removesuffix(".jsonl")
    return stem if languages.is_known(stem) else None


def _text(rec: dict[str, Any], key: str, where: str) -> str | None:
    value = rec.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise UserError(f"{where}: '{key}' must be a string")
    return value


def _choices(rec: dict[str, Any], where: str) -> tuple[str, ...]:
    choices = rec.get("choices")
    if not isinstance(choices, list) or not choices:
        raise UserError(f"{where}: 'choices' are empty or missing (expected a non-empty list of strings)")
    for i, c in enumerate(choices):
        if not isinstance(c, str) or not c.strip():
            raise UserError(f"{where}: choice {i} is empty or not a string")
    return tuple(choices)


def _answer(rec: dict[str, Any], n: int, where: str) -> int:
    answer = rec.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, int):
        raise UserError(f"{where}: 'answer' must be an integer index into 'choices'")
    if not 0 <= answer < n:
        raise UserError(f"{where}: answer index {answer} is out of range for {n} choices")
    return answer


def _labels(rec: dict[str, Any], n: int, where: str) -> tuple[int, ...] | None:
    labels = rec.get("labels")
    if labels is None:
        return None
    if not isinstance(labels, list) or len(labels) != n or any(v not in (0, 1) for v in labels) or not any(labels):
        raise UserError(f"{where}: 'labels' must be {n} values of 0/1 with at least one 1")
    return tuple(int(v) for v in labels)


def parse_item(rec: Any, where: str, required_lang: str | None = None, index: int = 0) -> Item:
    """One record as an Item; `required_lang` is the language its file is named for."""
    if not isinstance(rec, dict):
        raise UserError(f"{where}: expected a JSON object")
    lang = rec.get("lang", required_lang)
    if not isinstance(lang, str) or not lang:
        raise UserError(f"{where}: no 'lang' (each record needs one unless the file is named <lang>.jsonl)")
    if not languages.is_known(lang):
        raise UserError(f"{where}: unknown language {lang!r}")
    if required_lang is not None and lang != required_lang:
        raise UserError(f"{where}: lang {lang!r} in a file for {required_lang!r} (one language per file)")
    question, context = _text(rec, "question", where), _text(rec, "context", where)
    if not (question or context):
        raise UserError(f"{where}: needs a non-empty 'question' or 'context'")
    choices = _choices(rec, where)
    return Item(
        id=str(rec.get("id", index)), lang=lang, choices=choices, answer=_answer(rec, len(choices), where),
        question=question, context=context, labels=_labels(rec, len(choices), where), where=where,
        extra={k: v for k, v in rec.items() if k not in {"id", "lang", "question", "context", "choices", "answer", "labels"}},
    )


def read_items(path: Path, required_lang: str | None = None) -> list[Item]:
    """Every item of a JSONL file, checked; a file named `<lang>.jsonl` must hold only that language."""
    required_lang = required_lang or file_language(path)
    items = [parse_item(rec, where, required_lang, i) for i, (where, rec) in enumerate(iter_jsonl_at(path))]
    if not items:
        raise UserError(f"{path}: no items")
    return items


def read_texts(path: Path, text_key: str = "text") -> dict[str, list[str]]:
    """Texts of a JSONL file, by each record's `lang` (or the language the file is named for)."""
    required = file_language(path)
    out: dict[str, list[str]] = {}
    for where, rec in iter_jsonl_at(path):
        if not isinstance(rec, dict) or not isinstance(rec.get(text_key), str):
            raise UserError(f"{where}: expected an object with a string '{text_key}'")
        lang = rec.get("lang", required)
        if not isinstance(lang, str) or not languages.is_known(lang):
            raise UserError(f"{where}: missing or unknown 'lang' {lang!r}")
        if required is not None and lang != required:
            raise UserError(f"{where}: lang {lang!r} in a file for {required!r} (one language per file)")
        out.setdefault(lang, []).append(rec[text_key])
    if not out:
        raise UserError(f"{path}: no texts")
    return out
