"""Optional generation tasks: translation, greedy decoding, scored with chrF (sacrebleu).

Items are JSONL records `{"source", "target", "lang", "source_lang"?}` (source_lang defaults to
English): the model sees `<Source language>: <source>\\n<Target language>:` and its output up to
the first newline is the hypothesis. chrF is sacrebleu's corpus-level chrF, per target language.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from occiforge import languages
from occiforge.errors import UserError
from occiforge.io import iter_jsonl_at


@dataclass(frozen=True)
class Pair:
    source: str
    target: str
    lang: str
    source_lang: str = "en"

    def prompt(self) -> str:
        return f"{languages.get(self.source_lang).name}: {self.source}\n{languages.get(self.lang).name}:"


def read_pairs(path: Path) -> list[Pair]:
    out = []
    for where, rec in iter_jsonl_at(path):
        if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) and rec[k] for k in ("source", "target", "lang")):
            raise UserError(f"{where}: expected non-empty strings 'source', 'target' and 'lang'")
        for key in ("lang", "source_lang"):
            if key in rec and not languages.is_known(rec[key]):
                raise UserError(f"{where}: unknown language {rec[key]!r} in '{key}'")
        out.append(Pair(rec["source"], rec["target"], rec["lang"], rec.get("source_lang", "en")))
    if not out:
        raise UserError(f"{path}: no items")
    return out


@torch.no_grad()
def generate(model: Any, tok: Any, prompts: Sequence[str], max_new_tokens: int = 64, batch_size: int = 8) -> list[str]:
    """Greedy continuations, cut at the first newline (left padding, so batches decode together)."""
    side, tok.padding_side = tok.padding_side, "left"
    device = next(model.parameters()).device
    out: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            enc = tok(list(prompts[start : start + batch_size]), return_tensors="pt", padding=True).to(device)
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            out += [t.lstrip(" ").split("\n", 1)[0].strip() for t in texts]
    finally:
        tok.padding_side = side
    return out


def score_translation(model: Any, tok: Any, pairs: Sequence[Pair], max_new_tokens: int = 64, batch_size: int = 8) -> dict[str, dict[str, Any]]:
    """{lang: {"chrf": corpus chrF, "n": items}} per target language."""
    try:
        import sacrebleu
    except ImportError:
        raise UserError("translation scoring needs sacrebleu (pip install sacrebleu)") from None
    hyps = generate(model, tok, [p.prompt() for p in pairs], max_new_tokens, batch_size)
    out: dict[str, dict[str, Any]] = {}
    for lang in sorted({p.lang for p in pairs}):
        idx = [i for i, p in enumerate(pairs) if p.lang == lang]
        chrf = sacrebleu.corpus_chrf([hyps[i] for i in idx], [[pairs[i].target for i in idx]])
        out[lang] = {"chrf": float(chrf.score), "n": len(idx)}
    return out
