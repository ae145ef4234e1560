"""Language routing for an assembled mixture: router rows from per-language hidden-state
centroids, the routing shares per language and layer, and the batches of the brief training.

Router row e of layer l is the centroid of layer l's MLP inputs on calibration text in expert
e's language, minus the mean of the experts' centroids, whitened by the pooled within-language
covariance (Fisher's discriminant; mergekit-moe's `hidden` gate mode with each language's text as
the positive prompts and the other languages' as the negative ones, plus the whitening). Layers
are set in order, each on the MLP inputs the mixture produces with the routers below it already
set, so the rows match what each router will see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

Windows = list[list[int]]


def token_stream(tok: Any, texts: Iterable[str], max_tokens: int) -> np.ndarray:
    """`<s> doc </s>` for each text, concatenated, up to `max_tokens` tokens."""
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    out: list[int] = []
    for text in texts:
        out += [bos, *tok(text, add_special_tokens=False)["input_ids"], tok.eos_token_id]
        if len(out) >= max_tokens:
            break
    return np.asarray(out[:max_tokens], dtype=np.int64)


def windows(stream: np.ndarray, seq_len: int) -> Windows:
    """Consecutive windows of `seq_len` tokens (the last, shorter one dropped unless it is the only one)."""
    if len(stream) <= seq_len:
        return [stream.tolist()] if len(stream) else []
    return [stream[i : i + seq_len].tolist() for i in range(0, len(stream) - seq_len + 1, seq_len)]


def _batches(wins: Windows, batch_size: int) -> Iterable[torch.Tensor]:
    by_len: dict[int, Windows] = {}
    for w in wins:
        by_len.setdefault(len(w), []).append(w)
    for group in by_len.values():
        for i in range(0, len(group), batch_size):
            yield torch.tensor(group[i : i + batch_size], dtype=torch.long)


class _Stop(Exception):
    """Raised by a hook once it has what it needs: the rest of the forward pass is skipped."""


def mlp_inputs(model: Any, wins: Windows, layer: int, batch_size: int = 16) -> torch.Tensor:
    """The MLP inputs (post-attention-norm hidden states) of layer `layer` for every token, [N, H]."""
    captured: list[torch.Tensor] = []

    def hook(module: Any, args: tuple[Any, ...]) -> None:
        captured.append(args[0].detach().reshape(-1, args[0].shape[-1]).float().cpu())
        raise _Stop

    device = next(model.parameters()).device
    handle = model.model.layers[layer].mlp.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            for ids in _batches(wins, batch_size):
                try:
                    model(input_ids=ids.to(device), use_cache=False)
                except _Stop:
                    pass
    finally:
        handle.remove()
    return torch.cat(captured)


def centroid_rows(feats: list[torch.Tensor], scale: float, ridge: float = 1e-2) -> torch.Tensor:
    """One router row per expert: its language's centroid minus the mean centroid, whitened by the
    pooled within-language covariance (Fisher's discriminant directions), orthogonal to the mean
    centroid, norm `scale`."""
    centroids = torch.stack([f.mean(dim=0) for f in feats])
    within = torch.cat([f - c for f, c in zip(feats, centroids)])
    cov = within.T @ within / max(len(within) - 1, 1)
    cov += ridge * cov.diagonal().mean() * torch.eye(cov.shape[0])
    mean = centroids.mean(dim=0, keepdim=True)
    rows = torch.linalg.solve(cov, (centroids - mean).T).T
    # a router has no bias: project out the mean state, which every token shares, so it adds nothing
    u = mean / mean.norm().clamp(min=1e-8)
    rows = rows - (rows @ u.T) * u
    return rows / rows.norm(dim=-1, keepdim=True).clamp(min=1e-8) * scale


def init_language_routers(model: Any, calibration: list[Windows], scale: float) -> None:
    """Set every layer's router from the calibration windows of each expert's language, in layer order."""
    for layer, block in enumerate(model.model.layers):
        feats = [mlp_inputs(model, wins, layer) for wins in calibration]
        gate = block.mlp.gate.weight
        with torch.no_grad():
            gate.copy_(centroid_rows(feats, scale).to(gate.dtype))


def routing_shares(model: Any, by_language: dict[str, Windows], batch_size: int = 16) -> dict[str, dict[str, Any]]:
    """Per language: the share of its tokens whose first choice is each expert, per layer and averaged."""
    n_exp = model.config.num_local_experts
    counts: list[torch.Tensor] = []

    def hook_for(layer: int) -> Callable[..., None]:
        def hook(module: Any, args: Any, output: tuple[torch.Tensor, ...]) -> None:
            counts[layer] += torch.bincount(output[2][:, 0].cpu(), minlength=n_exp)  # top-k indices, best first
        return hook

    device = next(model.parameters()).device
    handles = [block.mlp.gate.register_forward_hook(hook_for(i)) for i, block in enumerate(model.model.layers)]
    out: dict[str, dict[str, Any]] = {}
    try:
        for lang, wins in by_language.items():
            counts[:] = [torch.zeros(n_exp, dtype=torch.long) for _ in model.model.layers]
            with torch.no_grad():
                for ids in _batches(wins, batch_size):
                    model(input_ids=ids.to(device), use_cache=False)
            layers = [(c / c.sum().clamp(min=1)).tolist() for c in counts]
            out[lang] = {"layers": [[round(v, 4) for v in row] for row in layers],
                         "mean": [round(float(v), 4) for v in np.mean(layers, axis=0)], "tokens": int(counts[0].sum())}
    finally:
        for h in handles:
            h.remove()
    return out


def mixed_batches(streams: list[np.ndarray], batch_size: int, seq_len: int, seed: int,
                  grad_accum: int = 1) -> Callable[[int, int], dict[str, torch.Tensor]]:
    """`get_batch(step, micro)`: rows of `seq_len + 1` tokens cycling through the experts (row i of the
    run comes from expert i mod E's language, `streams[e]`), each a random window; `expert` names each
    row's expert. A pure function of (seed, step, micro), so a resumed training draws the same batches."""
    window = seq_len + 1

    def get_batch(step: int, micro: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([seed, step, micro])
        first = (step * grad_accum + micro) * batch_size  # the row's index in the whole run
        experts = [(first + i) % len(streams) for i in range(batch_size)]
        rows = []
        for e in experts:
            start = int(rng.integers(0, max(len(streams[e]) - window, 0) + 1))
            rows.append(streams[e][start : start + window])
        ids = torch.from_numpy(np.stack(rows))
        return {"input_ids": ids, "labels": ids, "expert": torch.tensor(experts)}

    return get_batch


def freeze_for(model: Any, mode: str) -> int:
    """Make only the routers trainable (`router`) or everything (`all`); returns the trainable count."""
    for name, p in model.named_parameters():
        p.requires_grad_(mode == "all" or name.endswith("mlp.gate.weight"))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
