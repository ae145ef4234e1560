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
import torch.nn.functional as F


def _windows(ids: list[int], bos: int, size: int) -> list[list[int]]:
    seq = [bos, *ids]
    # each window repeats the last token of the previous one as its first (unscored) input
    return [seq[i : i + size] for i in range(0, max(len(seq) - 1, 1), size - 1)]


@torch.no_grad()
def nll_sum(model: torch.nn.Module, windows: Sequence[list[int]], batch_size: int, pad: int) -> float:
    """Sum of next-token NLL (nats) over all windows, batched by length."""
    device = next(model.parameters()).device
    order = sorted(range(len(windows)), key=lambda i: -len(windows[i]))
    total = 0.0
    for start in range(0, len(order), batch_size):
        chunk = [windows[i] for i in order[start : start + batch_size]]
        width = max(map(len, chunk))
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, w in enumerate(chunk):
            ids[row, : len(w)] = torch.tensor(w)
            mask[row, : len(w)] = 1
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
        nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        total += float((nll * mask[:, 1:]).sum())
    return total


def prefix_token_id(tok: object) -> int:
    """The token every sequence is scored after: BOS, or EOS for tokenizers without one (as lm-eval)."""
    return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id  # type: ignore[attr-defined]


def bits_per_byte(model: torch.nn.Module, tok: object, texts: Sequence[str], max_len: int, batch_size: int = 8) -> dict[str, float]:
    model.eval()
    encoded = tok(list(texts), add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    bos = prefix_token_id(tok)
    windows = [w for ids in encoded for w in _windows(ids, bos, max_len) if len(w) > 1]
    nats = nll_sum(model, windows, batch_size, tok.pad_token_id)  # type: ignore[attr-defined]
    n_bytes = sum(len(t.encode()) for t in texts)
    n_tokens = sum(map(len, encoded))
    return {"bpb": nats / math.log(2) / max(n_bytes, 1), "bytes": n_bytes, "tokens": n_tokens, "documents": len(texts)}
