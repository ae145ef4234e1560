"""The tokens stage: curated train text -> one flat token file per language.

`tokens/<lang>/train.bin` holds the documents' ids back to back, each document as
`<s> ids </s>`; `meta.json` records dtype and counts. Training memory-maps these files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from occiforge import artifacts
from occiforge.data.stage import iter_texts
from occiforge.tokenizer.stage import load_tokenizer

BATCH = 512  # documents per encode_batch call


def fingerprint(ctx: Any) -> str:
    return artifacts.fingerprint("tokens/1", ctx.fingerprint("data"), ctx.fingerprint("tokenizer"), ctx.recipe.languages)


def _batches(it: Any, n: int) -> Any:
    buf: list[str] = []
    for item in it:
        buf.append(item)
        if len(buf) == n:
            yield buf
            buf = []
    if buf:
        yield buf


def tokenize_language(tok: Any, data_dir: Path, lang: str, out: Path) -> dict[str, int]:
    dtype = np.uint16 if len(tok) <= np.iinfo(np.uint16).max else np.uint32
    bos, eos = tok.bos_token_id, tok.eos_token_id
    n_docs = n_tokens = 0
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train.bin", "wb") as f:
        for texts in _batches(iter_texts(data_dir, lang, "train"), BATCH):
            for ids in tok(texts, add_special_tokens=False)["input_ids"]:
                arr = np.asarray([bos, *ids, eos], dtype=dtype)
                f.write(arr.tobytes())
                n_tokens += arr.size
                n_docs += 1
    meta = {"dtype": np.dtype(dtype).name, "tokens": n_tokens, "documents": n_docs}
    (out / "meta.json").write_text(json.dumps(meta))
    return meta


def run(ctx: Any, fp: str) -> dict[str, Any]:
    ctx.upstream("data")
    ctx.upstream("tokenizer")
    tok = load_tokenizer(str(ctx.stage_dir("tokenizer")))
    per_lang = {}
    with artifacts.staged_dir(ctx.stage_dir("tokens")) as tmp:
        for lang in ctx.recipe.languages:
            per_lang[lang] = tokenize_language(tok, ctx.stage_dir("data"), lang, tmp / lang)
            ctx.log(f"  {lang}: {per_lang[lang]['tokens']:,} tokens in {per_lang[lang]['documents']} documents")
    return {"vocab_size": len(tok), "per_language": per_lang}


def open_tokens(tokens_dir: Path, lang: str) -> np.ndarray:
    meta = json.loads((tokens_dir / lang / "meta.json").read_text())
    return np.memmap(tokens_dir / lang / "train.bin", dtype=meta["dtype"], mode="r")
