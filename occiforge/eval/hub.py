"""Built-in task data on the Hugging Face hub: where each template's items live, per language.

Each `HubSpec` names the dataset id, the config for a language, the split scored and the
split few-shot examples come from, and an adapter from the hub's record to the common item
format (occiforge.eval.items). Dataset ids and fields follow lm-evaluation-harness's task
definitions (okapi/*, belebele, xcopa), so the English-prompt variants pose the same prompts.
Loading uses `datasets.load_dataset` (lazily imported: it needs the network or a warm cache).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from occiforge import languages
from occiforge.errors import UserError
from occiforge.eval.items import Item, parse_item
from occiforge.io import load_hf_dataset

Record = dict[str, Any]
# Okapi (machine-translated ARC/HellaSwag/MMLU/TruthfulQA) languages among the 24, plus English
OKAPI = ("da", "de", "en", "es", "fr", "hr", "hu", "it", "nl", "pt", "ro", "sk", "sv")
EXAMS = ("bg", "de", "es", "fr", "hr", "hu", "it", "lt", "pl", "pt")


@dataclass(frozen=True)
class HubSpec:
    dataset: str
    config: Callable[[str], str]  # language -> dataset config name
    split: str
    fewshot_split: str | None  # None: draw examples from `split`, never the item itself
    adapt: Callable[[Record, str], Record | None]  # hub record -> common format (None: skip)
    languages: tuple[str, ...]


def okapi_clean(text: str) -> str:
    """lm-eval's okapi `preprocess`: WikiHow bracket artefacts out, double spaces folded."""
    text = text.strip().replace(" [title]", ". ")
    return re.sub("\\[.*?\\]", "", text).replace("  ", " ")


def _arc(rec: Record, lang: str) -> Record:
    options = [rec.get(f"option_{c}") for c in "abcde"]
    return {"id": rec.get("id"), "lang": lang, "question": okapi_clean(rec["instruction"]),
            "choices": [okapi_clean(o) for o in options if o], "answer": "ABCDE".index(rec["answer"])}


def _mmlu(rec: Record, lang: str) -> Record:
    return {"id": rec.get("id"), "lang": lang, "question": rec["instruction"].strip(),
            "choices": [rec[f"option_{c}"] for c in "abcd"], "answer": "ABCD".index(rec["answer"])}


def _hellaswag(rec: Record, lang: str) -> Record:
    ctx = rec["ctx_a"] + " " + rec["ctx_b"].capitalize()
    return {"id": rec.get("ind"), "lang": lang, "context": okapi_clean(rec["activity_label"] + ": " + ctx),
            "choices": [okapi_clean(e) for e in rec["endings"]], "answer": int(rec["label"])}


def _truthfulqa(rec: Record, lang: str) -> Record:
    labels = [int(v) for v in rec["mc2_targets_labels"]]
    return {"lang": lang, "question": okapi_clean(rec["question"]), "choices": list(rec["mc2_targets_choices"]),
            "labels": labels, "answer": labels.index(1)}


def _belebele(rec: Record, lang: str) -> Record:
    return {"id": f"{rec.get('link')}#{rec.get('question_number')}", "lang": lang, "context": rec["flores_passage"],
            "question": rec["question"].strip(), "choices": [rec[f"mc_answer{i}"] for i in range(1, 5)],
            "answer": int(rec["correct_answer_num"]) - 1}


SIB_LABELS = ("science/technology", "travel", "politics", "sports", "health", "entertainment", "geography")


def _sib200(rec: Record, lang: str) -> Record:
    return {"id": rec.get("index_id"), "lang": lang, "context": rec["text"], "choices": list(SIB_LABELS),
            "answer": SIB_LABELS.index(rec["category"])}


def _exams(rec: Record, lang: str) -> Record | None:
    if rec["info"]["language"] != languages.get(lang).name:
        return None  # the multilingual config mixes languages
    choices = rec["question"]["choices"]
    return {"id": rec["id"], "lang": lang, "question": rec["question"]["stem"], "choices": list(choices["text"]),
            "answer": list(choices["label"]).index(rec["answerKey"])}


def _xcopa(rec: Record, lang: str) -> Record:
    return {"id": rec.get("idx"), "lang": lang, "context": rec["premise"], "question": rec["question"],
            "choices": [rec["choice1"], rec["choice2"]], "answer": int(rec["label"])}


def _flores(lang: str) -> str:
    return languages.get(lang).flores


def _same(lang: str) -> str:
    return lang


EU = tuple(sorted(languages.EU_LANGUAGES))
HUB: dict[str, HubSpec] = {
    "m_arc": HubSpec("alexandrainst/m_arc", _same, "test", "train", _arc, OKAPI),
    "m_hellaswag": HubSpec("alexandrainst/m_hellaswag", _same, "val", None, _hellaswag, OKAPI),
    "m_mmlu": HubSpec("alexandrainst/m_mmlu", _same, "test", "train", _mmlu, OKAPI),
    "m_truthfulqa": HubSpec("alexandrainst/m_truthfulqa", _same, "val", None, _truthfulqa, OKAPI),
    "belebele": HubSpec("facebook/belebele", _flores, "test", None, _belebele, EU),
    "sib200": HubSpec("Davlan/sib200", _flores, "test", "train", _sib200, EU),
    "exams": HubSpec("mhardalov/exams", lambda _: "multilingual", "test", "train", _exams, EXAMS),
    "xcopa": HubSpec("cambridgeltl/xcopa", _same, "test", "validation", _xcopa, ("et", "it")),
}


def adapt_rows(spec: HubSpec, rows: list[Record], lang: str, where: str) -> list[Item]:
    """Hub rows as checked items; a row the adapter cannot read is a UserError naming it."""
    items = []
    for i, row in enumerate(rows):
        try:
            rec = spec.adapt(row, lang)
        except (KeyError, ValueError, TypeError) as e:
            raise UserError(f"{where}#{i}: unexpected record ({e.__class__.__name__}: {e})") from None
        if rec is not None:
            rec["id"] = i if rec.get("id") is None else rec["id"]  # ids seed the few-shot draws
            items.append(parse_item(rec, f"{where}#{i}", lang, i))
    return items


def load_split(spec: HubSpec, lang: str, split: str, dataset: str | None = None) -> list[Item]:
    """One language's split of a hub task, as items (downloads, or reads the HF cache)."""
    dataset = dataset or spec.dataset
    config = spec.config(lang)
    rows = list(load_hf_dataset(dataset, split, config))
    return adapt_rows(spec, rows, lang, f"hf:{dataset}/{config}/{split}")
