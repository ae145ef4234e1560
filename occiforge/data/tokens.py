"""The tokens stage: curated train text -> one flat token file per language.

`tokens/<lang>/train.bin` holds the documents' ids back to back, each document as
`<s> ids </s>`; `docs.npy` holds the documents' offsets, `meta.json` dtype and counts;
`tokens/<lang>/heldout/` the same for the held-out split. Training memory-maps these files
(`occiforge.io.open_tokens`). Token shards live with the data: they are curated text too.

Encoding goes through the Rust tokenizer's `encode_batch` on all cores (tokenizers' own thread
pool, switched on for this stage only: the CLI switches it off so that forks elsewhere stay
quiet); speed against a bare `encode_batch` of the same text: BENCHMARKS.md ("Tokenization").
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from occiforge import artifacts
from occiforge.context import Context, Stage
from occiforge.io import DOC_INDEX, TOKENS_FILE, TOKENS_META, iter_records
from occiforge.lm import load_tokenizer

BATCH = 512  # documents per encode_batch call


def fingerprint(ctx: Context) -> str:
    return artifacts.fingerprint("tokens/2", ctx.fingerprint("data"), ctx.fingerprint("tokenizer"), ctx.recipe.languages)


def _batches(it: Any, n: int) -> Any:
    buf: list[str] = []
    for item in it:
        buf.append(item)
        if len(buf) == n:
            yield buf
            buf = []
    if buf:
        yield buf


@contextmanager
def parallel_encoding() -> Iterator[None]:
    """tokenizers' thread pool on for the block, the caller's setting restored after."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def tokenize_language(tok: Any, data_dir: Path, lang: str, out: Path, split: str = "train") -> dict[str, Any]:
    import numpy as np

    dtype = np.uint16 if len(tok) <= np.iinfo(np.uint16).max else np.uint32
    bos, eos = tok.bos_token_id, tok.eos_token_id
    head = [] if bos is None else [bos]  # Qwen-style tokenizers have no BOS
    fast = tok.backend_tokenizer
    fast.no_truncation()  # as the HF wrapper does per call: a tokenizer.json may carry a truncation setting
    fast.no_padding()
    n_docs = n_tokens = 0
    per_source: dict[str, int] = {}
    offsets = [0]  # document boundaries: training packs whole documents (occiforge/train/packing.py)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / TOKENS_FILE, "wb") as f, parallel_encoding():
        for batch in _batches(iter_records(data_dir, lang, split), BATCH):
            for record, enc in zip(batch, fast.encode_batch([r["text"] for r in batch], add_special_tokens=False)):
                arr = np.asarray([*head, *enc.ids, eos], dtype=dtype)
                f.write(arr.tobytes())
                n_tokens += arr.size
                n_docs += 1
                offsets.append(n_tokens)
                source = (record.get("metadata") or {}).get("source") or "unknown"
                per_source[source] = per_source.get(source, 0) + arr.size
    np.save(out / DOC_INDEX, np.asarray(offsets, dtype=np.int64))
    meta = {"dtype": np.dtype(dtype).name, "tokens": n_tokens, "documents": n_docs, "per_source": per_source}
    (out / TOKENS_META).write_text(json.dumps(meta))
    return meta


def run(ctx: Context, fp: str) -> dict[str, Any]:
    tok = load_tokenizer(str(ctx.stage_dir("tokenizer")))
    per_lang = {}
    with artifacts.staged_dir(ctx.stage_dir("tokens")) as tmp:
        for lang in ctx.recipe.languages:
            per_lang[lang] = tokenize_language(tok, ctx.stage_dir("data"), lang, tmp / lang)
            # the same layout under <lang>/heldout/: training's validation loss per language reads it
            per_lang[lang]["heldout_tokens"] = tokenize_language(tok, ctx.stage_dir("data"), lang, tmp / lang / "heldout",
                                                                 "heldout")["tokens"]
            sources = ", ".join(f"{src} {n:,}" for src, n in per_lang[lang]["per_source"].items())
            ctx.log(f"  {lang}: {per_lang[lang]['tokens']:,} tokens in {per_lang[lang]['documents']} documents ({sources})")
    return {"vocab_size": len(tok), "per_language": per_lang}


STAGE = Stage(name="tokens", folder="tokens", reads=("data", "tokenizer"), fingerprint=fingerprint, run=run)
