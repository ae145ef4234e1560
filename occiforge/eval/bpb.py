"""Bits per byte: the model's negative log-likelihood of a text, in bits, per UTF-8 byte.

Normalising by bytes rather than tokens makes models with different tokenizers comparable.
Each document is scored as `<s> tokens`; a document longer than the context is cut into
consecutive windows, each scored on its own (no overlap), which slightly overstates bpb for
long documents and is the same for every model compared.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from occiforge.lm import nll_sum, prefix_token_id


def _windows(ids: list[int], bos: int, size: int) -> list[list[int]]:
    seq = [bos, *ids]
    # each window repeats the last token of the previous one as its first (unscored) input
    return [seq[i : i + size] for i in range(0, max(len(seq) - 1, 1), size - 1)]


def bits_per_byte(model: torch.nn.Module, tok: object, texts: Sequence[str], max_len: int, batch_size: int = 8) -> dict[str, float]:
    model.eval()
    encoded = tok(list(texts), add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    bos = prefix_token_id(tok)
    windows = [w for ids in encoded for w in _windows(ids, bos, max_len) if len(w) > 1]
    nats = nll_sum(model, windows, batch_size, tok.pad_token_id)  # type: ignore[attr-defined]
    n_bytes = sum(len(t.encode()) for t in texts)
    n_tokens = sum(map(len, encoded))
    return {"bpb": nats / math.log(2) / max(n_bytes, 1), "bytes": n_bytes, "tokens": n_tokens, "documents": len(texts)}
