"""The tokenizer stage: train on curated data (or adopt a pretrained one), measure it per language."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerFast

from occiforge import artifacts
from occiforge.data.stage import iter_texts
from occiforge.errors import UserError
from occiforge.tokenizer.train import BOS, EOS, PAD, sample_texts, save_hf, train_tokenizer


def fingerprint(ctx: Any) -> str:
    cfg = ctx.recipe.tokenizer
    upstream = None if cfg.pretrained else ctx.fingerprint("data")
    return artifacts.fingerprint("tokenizer/1", cfg.model_dump(mode="json"), ctx.recipe.languages, upstream)


def load_tokenizer(spec: str) -> PreTrainedTokenizerFast:
    """A tokenizer.json file, a HF folder or a hub id, as a fast HF tokenizer with BOS/EOS/PAD."""
    try:
        if spec.endswith(".json") and Path(spec).is_file():
            tok = PreTrainedTokenizerFast(tokenizer_file=spec)
        else:
            tok = AutoTokenizer.from_pretrained(spec)
    except Exception as e:  # noqa: BLE001 - any loader failure is a user-facing "cannot load"
        raise UserError(f"cannot load tokenizer {spec!r}: {str(e).splitlines()[0][:200]}") from None
    if not tok.is_fast:
        raise UserError(f"tokenizer {spec!r} has no fast (tokenizers) implementation")
    for attr, default in (("bos_token", BOS), ("eos_token", EOS)):
        if getattr(tok, attr) is None:
            raise UserError(f"tokenizer {spec!r} has no {attr} (expected e.g. {default!r})")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token if PAD not in tok.get_vocab() else PAD
    return tok


def measure(tok: PreTrainedTokenizerFast, texts: list[str]) -> dict[str, float]:
    """Bytes per token and tokens per whitespace word on held-out text (the quick health check)."""
    if not texts:
        return {}
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    n_tok = sum(map(len, ids))
    n_bytes = sum(len(t.encode()) for t in texts)
    n_words = sum(len(t.split()) for t in texts)
    return {"tokens": n_tok, "bytes_per_token": round(n_bytes / max(n_tok, 1), 4), "tokens_per_word": round(n_tok / max(n_words, 1), 4)}


def run(ctx: Any, fp: str) -> dict[str, Any]:
    cfg, langs = ctx.recipe.tokenizer, ctx.recipe.languages
    data_dir = ctx.stage_dir("data")
    ctx.upstream("data")
    folder = ctx.stage_dir("tokenizer")
    with artifacts.staged_dir(folder) as tmp:
        if cfg.pretrained:
            tok = load_tokenizer(cfg.pretrained)
            tok.save_pretrained(str(tmp))
        else:
            train_langs = cfg.languages or langs
            texts = {lang: list(iter_texts(data_dir, lang, "train")) for lang in train_langs}
            with ctx.status(f"tokenizer: training {cfg.kind} ({cfg.vocab_size} tokens)…"):
                tok = save_hf(train_tokenizer(sample_texts(texts, cfg), cfg), tmp)
        report = {lang: measure(tok, list(iter_texts(data_dir, lang, "heldout"))) for lang in langs}
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
    for lang, row in report.items():
        ctx.log(f"  {lang}: {row.get('bytes_per_token', '-')} bytes/token, {row.get('tokens_per_word', '-')} tokens/word")
    return {"vocab_size": len(tok), "per_language": report}
