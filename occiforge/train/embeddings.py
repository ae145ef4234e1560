"""Embeddings for the tokens an extension added: resize the model and initialise the new rows.

- `random`: N(0, initializer_range), what `_init_weights` gives a fresh row (the baseline);
- `mean`: every new row is the mean of the old rows (Hewitt 2021);
- `decomposition`: a new token's row is the mean of the rows of the old tokens its text was
  made of (its `pieces` in `extension.json`), so `Ġκαι` starts where `Ġκ` and `αι` were;
- `decomposition-calibrated` (the default): decomposition, with the output rows corrected in
  two ways on a sample of target-language training text (`sample_windows`, 4,096 tokens per
  language):
  1. centred: each row loses its component along the mean final hidden state. That component
     sets a token's logit in every context alike (how often its pieces come next in general),
     which a merged token must not inherit: kept, it put 40% of the mass on new German tokens
     where 20% of the targets were new, and gave Greek tokens the logits of pieces an English
     model had learnt never to predict. Centred, a new token's mean logit starts at zero like a
     fresh random row's.
  2. scaled: one factor for all rows, the maximum-likelihood one on the sample. The pieces' rows
     say where a token belongs, but a model that has never read the language spreads their
     logits too wide: unscaled, centred rows lost to random on Hungarian and Finnish for the
     demo's joint model. Untied, the hidden states do not depend on the output rows, so the
     likelihood of every candidate comes from one forward pass (a convex 1-D problem, `SCALES`);
     tied, the factor also shrinks the input rows, which cost Greek 0.24 bits per byte when
     fitted that way, so each of `TIED_SCALES` gets a forward pass of its own.

Input and output embeddings get the same treatment (each from its own old rows); when they are
tied there is one matrix. Rows of old tokens are never touched. Which init works best is
measured in benchmarks/bench_tokenizer_init.py (BENCHMARKS.md, "Tokenizer").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from occiforge.errors import UserError
from occiforge.lm import nll_sum

INITS = ("decomposition-calibrated", "decomposition", "mean", "random")
CALIBRATED = "decomposition-calibrated"
SAMPLE_WINDOWS, SAMPLE_LENGTH = 32, 128  # per target language: 4,096 tokens (1,024 chose worse scales)
SCALES = torch.linspace(0.05, 2.0, 40)  # candidate output scales, untied
TIED_SCALES = (0.1, 0.2, 0.35, 0.5, 0.7, 1.0, 1.4)  # tied: one forward pass each


def new_rows(weight: torch.Tensor, base_rows: int, pieces: list[list[int]], method: str, std: float, seed: int = 0) -> torch.Tensor:
    """Rows for new tokens from the first `base_rows` rows of `weight` (the old vocabulary)."""
    old = weight[:base_rows].detach().float()
    if method == "random":
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(len(pieces), old.shape[1], generator=gen) * std
    if method == "mean":
        return old.mean(0, keepdim=True).expand(len(pieces), -1).clone()
    if method in ("decomposition", CALIBRATED):
        if any(not p or max(p) >= base_rows for p in pieces):
            raise UserError("tokenizer extension: a new token's pieces are not all old tokens; re-run the tokenizer stage")
        return torch.stack([old[torch.tensor(p)].mean(0) for p in pieces])
    raise UserError(f"embedding_init: unknown init {method!r} (choose from {', '.join(INITS)})")


def sample_windows(streams: dict[str, np.ndarray], languages: list[str], length: int = SAMPLE_LENGTH, per_language: int = SAMPLE_WINDOWS) -> list[torch.Tensor]:
    """Evenly spaced token windows from each target language's training stream (deterministic)."""
    out = []
    for lang in languages:
        stream = streams.get(lang)
        if stream is None or len(stream) < 2:
            continue
        size = min(length, len(stream))
        starts = np.linspace(0, len(stream) - size, per_language).astype(np.int64)
        out.append(torch.from_numpy(np.stack([np.asarray(stream[s : s + size], dtype=np.int64) for s in starts])))
    return out


@torch.no_grad()
def hidden_states(model: Any, windows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Final hidden states (what the output embedding sees) at every position but the last of
    each window, and the token that follows each: (positions x hidden, positions)."""
    decoder, device = model.get_decoder(), model.get_input_embeddings().weight.device
    states, targets = [], []
    for batch in windows:
        for chunk in batch.split(4):
            h = decoder(input_ids=chunk.to(device), use_cache=False).last_hidden_state.float()
            states.append(h[:, :-1].reshape(-1, h.shape[-1]).cpu())
            targets.append(chunk[:, 1:].reshape(-1))
    return torch.cat(states), torch.cat(targets)


def centre(rows: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """`rows` without their component along `direction`."""
    unit = direction / direction.norm().clamp_min(1e-12)
    return rows - (rows @ unit)[:, None] * unit[None]


def best_scale(states: torch.Tensor, targets: torch.Tensor, old: torch.Tensor, new: torch.Tensor, new_ids: torch.Tensor,
               scales: torch.Tensor = SCALES) -> float:
    """The factor for the `new` output rows that maximises the likelihood of `targets` (in SCALES)."""
    lse_old = torch.cat([torch.logsumexp(chunk @ old.T, 1) for chunk in states.split(256)])
    new_logits = states @ new.T
    col = torch.full((int(max(new_ids.max(), targets.max())) + 1,), -1, dtype=torch.long)
    col[new_ids] = torch.arange(len(new_ids))
    is_new = col[targets] >= 0
    gold_old = (states[~is_new] * old[targets[~is_new]]).sum(1).sum()
    gold_new = new_logits[is_new, col[targets[is_new]]].sum()
    nll = torch.stack([torch.logaddexp(lse_old, torch.logsumexp(s * new_logits, 1)).sum() - gold_old - s * gold_new for s in scales])
    return float(scales[int(nll.argmin())])


@torch.no_grad()
def init_new_embeddings(model: Any, record: dict[str, Any], method: str, seed: int = 0,
                        sample: list[torch.Tensor] | None = None) -> None:
    """Grow `model`'s embeddings to cover the extension and initialise the new rows in place.

    `decomposition-calibrated` needs `sample`: windows of target-language ids in the extended
    vocabulary (`sample_windows`), read with the decomposition rows already in place.
    """
    added = record["added"]
    if not added:
        return
    if method == CALIBRATED and not sample:
        raise UserError(f"embedding_init: {CALIBRATED} needs training text in {', '.join(record.get('languages', [])) or 'the target languages'}")
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
    out_w = inp if out is None or out.weight.data_ptr() == inp.data_ptr() else out.weight
    if out_w is not inp:
        out_w[ids] = new_rows(out_w, base, pieces, method, std, seed + 1).to(out_w.dtype)
    if method == CALIBRATED and out is not None:
        _calibrate(model, out_w, ids, base, sample or [], tied=out_w is inp)


def sample_nll(model: Any, windows: list[torch.Tensor]) -> float:
    """Summed next-token NLL (nats) of `windows` under `model`'s own logits (any scaling kept)."""
    return nll_sum(model, [w.tolist() for batch in windows for w in batch], batch_size=4, pad=0)


def _calibrate(model: Any, out_w: torch.Tensor, ids: torch.Tensor, base: int, sample: list[torch.Tensor], tied: bool) -> None:
    """Centre the new output rows on the sample's mean hidden state and scale them to fit it.
    Leaves the model in eval mode, as `from_pretrained` gives it (training sets its own mode)."""
    model.eval()
    states, targets = hidden_states(model, sample)
    rows = centre(out_w[ids].float().cpu(), states.mean(0))
    if not tied:
        out_w[ids] = (best_scale(states, targets, out_w[:base].float().cpu(), rows, ids) * rows).to(out_w.device, out_w.dtype)
        return
    nll = {}
    for scale in TIED_SCALES:
        out_w[ids] = (scale * rows).to(out_w.device, out_w.dtype)
        nll[scale] = sample_nll(model, sample)
    out_w[ids] = (min(nll, key=nll.__getitem__) * rows).to(out_w.device, out_w.dtype)
