"""Embeddings for the tokens an extension added: resize the model and initialise the new rows.

- `random`: N(0, initializer_range), what `_init_weights` gives a fresh row (the baseline);
- `mean`: every new row is the mean of the old rows (Hewitt 2021);
- `decomposition`: a new token's row is the mean of the rows of the old tokens its text was
  made of (its `pieces` in `extension.json`), so `Ġκαι` starts where `Ġκ` and `αι` were.

Input and output embeddings get the same treatment (each from its own old rows); when they are
tied there is one matrix. Rows of old tokens are never touched. Which init works best is
measured in benchmarks/bench_tokenizer_init.py (BENCHMARKS.md, "Tokenizer").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from occiforge.errors import UserError

EXTENSION_FILE = "extension.json"
INITS = ("decomposition", "mean", "random")


def read_extension(folder: str | Path) -> dict[str, Any] | None:
    """The extension record a tokenizer stage wrote next to its tokenizer, if any."""
    path = Path(folder) / EXTENSION_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def new_rows(weight: torch.Tensor, base_rows: int, pieces: list[list[int]], method: str, std: float, seed: int = 0) -> torch.Tensor:
    """Rows for new tokens from the first `base_rows` rows of `weight` (the old vocabulary)."""
    old = weight[:base_rows].detach().float()
    if method == "random":
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(len(pieces), old.shape[1], generator=gen) * std
    if method == "mean":
        return old.mean(0, keepdim=True).expand(len(pieces), -1).clone()
    if method == "decomposition":
        if any(not p or max(p) >= base_rows for p in pieces):
            raise UserError("tokenizer extension: a new token's pieces are not all old tokens; re-run the tokenizer stage")
        return torch.stack([old[torch.tensor(p)].mean(0) for p in pieces])
    raise UserError(f"tokenizer.extend.init: unknown init {method!r} (choose from {', '.join(INITS)})")


@torch.no_grad()
def init_new_embeddings(model: Any, record: dict[str, Any], method: str | None = None, seed: int = 0) -> None:
    """Grow `model`'s embeddings to cover the extension and initialise the new rows in place."""
    added = record["added"]
    if not added:
        return
    method = method or record.get("init", "decomposition")
    base = int(record["base_vocab_size"])
    ids = torch.tensor([a["id"] for a in added])
    pieces = [a["pieces"] for a in added]
    needed = int(ids.max()) + 1
    if model.get_input_embeddings().num_embeddings < needed:
        model.resize_token_embeddings(needed, mean_resizing=False)
    std = float(getattr(model.config, "initializer_range", 0.02))
    inp = model.get_input_embeddings().weight
    inp[ids] = new_rows(inp, base, pieces, method, std, seed).to(inp.dtype)
    out = model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != inp.data_ptr():
        out.weight[ids] = new_rows(out.weight, base, pieces, method, std, seed + 1).to(out.weight.dtype)
