"""Assembling a Mixtral-format mixture of experts from N dense Llama experts (Branch-Train-MiX).

Each expert's MLP becomes one expert of every layer: `mlp.experts.gate_up_proj[e]` is expert e's
`[gate_proj; up_proj]` and `mlp.experts.down_proj[e]` its `down_proj` (the layout transformers 5
and mergekit-moe write). Attention, embeddings and norms are averaged over the experts, as
Branch-Train-MiX does, or taken from the base (`shared: base`, as mergekit-moe does); the
embedding rows may instead be weighted per token by its frequency in each expert's language. The
routers `mlp.gate.weight` are written as zeros here and set by `occiforge.experts.router`.
Tensors stream from the experts' safetensors to the output shards, one layer at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from occiforge.errors import UserError
from occiforge.experts.merge import copy_non_weights, linear
from occiforge.experts.tensors import ShardWriter, TensorFolder
from occiforge.lm import load_config

# the Llama config fields a Mixtral config shares
_SHARED_CONFIG = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "initializer_range",
                  "rms_norm_eps", "pad_token_id", "bos_token_id", "eos_token_id", "tie_word_embeddings",
                  "attention_dropout", "rope_parameters")
_PROJ = ("gate_proj", "up_proj", "down_proj")
_VOCAB_ROWS = ("model.embed_tokens.weight", "lm_head.weight")


def mixtral_config(expert: Path, n_experts: int, top_k: int, what: str) -> Any:
    """The Mixtral config of a mixture of `n_experts` copies of the expert's architecture."""
    from transformers import MixtralConfig

    cfg = load_config(expert).to_dict()
    if cfg.get("model_type") not in ("llama", "mistral"):
        raise UserError(f"{what}: {expert} is a {cfg.get('model_type')!r} model; mixtures are assembled from Llama or "
                        "Mistral experts")
    if cfg.get("attention_bias") or cfg.get("mlp_bias"):
        raise UserError(f"{what}: {expert} has attention or MLP biases, which the Mixtral format has no place for")
    shared = {k: cfg[k] for k in _SHARED_CONFIG if k in cfg}
    out = MixtralConfig(**shared, num_local_experts=n_experts, num_experts_per_tok=top_k, sliding_window=None)
    out.architectures = ["MixtralForCausalLM"]
    return out


def _mlp_name(layer: int, proj: str) -> str:
    return f"model.layers.{layer}.mlp.{proj}.weight"


def expert_tensors(sources: list[TensorFolder], layer: int) -> dict[str, torch.Tensor]:
    """One layer's experts in the fused layout: gate_up_proj [E, 2I, H], down_proj [E, H, I]."""
    prefix = f"model.layers.{layer}.mlp.experts"
    gate_up = torch.stack([torch.cat([s.get(_mlp_name(layer, "gate_proj")), s.get(_mlp_name(layer, "up_proj"))]) for s in sources])
    down = torch.stack([s.get(_mlp_name(layer, "down_proj")) for s in sources])
    return {f"{prefix}.gate_up_proj": gate_up, f"{prefix}.down_proj": down}


def row_weighted(tensors: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Row v of the result: Σₑ weights[e, v] · tensors[e][v] (weights sum to 1 over experts)."""
    out = torch.zeros_like(tensors[0], dtype=torch.float32)
    for t, w in zip(tensors, weights):
        out += w[:, None].float() * t.float()
    return out.to(tensors[0].dtype)


def language_row_weights(counts: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
    """[E, V] token counts in each expert's language -> each token's weight per expert (columns sum to 1)."""
    c = counts.float() + smoothing
    return c / c.sum(dim=0, keepdim=True)


def assemble(experts: list[Path], out: Path, top_k: int, shared: str = "average", base: Path | None = None,
             row_weights: torch.Tensor | None = None, what: str = "moe", max_shard_bytes: int = 2 * 1024**3) -> Any:
    """Write the mixture of `experts` (checked compatible by the caller) to `out`; returns its config.
    `row_weights` [E, V]: the embedding (and untied output) rows are weighted per token instead."""
    if top_k > len(experts):
        raise UserError(f"{what}: top_k {top_k} is larger than the number of experts ({len(experts)})")
    cfg = mixtral_config(experts[0], len(experts), top_k, what)
    sources = [TensorFolder(p) for p in experts]
    base_src = TensorFolder(base) if shared == "base" and base is not None else None
    if shared == "base" and base_src is None:
        raise UserError(f"{what}: shared: base needs a base model")
    mlp = {_mlp_name(layer, p) for layer in range(cfg.num_hidden_layers) for p in _PROJ}
    writer = ShardWriter(out, max_shard_bytes)
    for name in sources[0].names():
        if name in mlp:
            continue
        if row_weights is not None and name in _VOCAB_ROWS:
            tensor = row_weighted([s.get(name) for s in sources], row_weights)
        else:
            tensor = base_src.get(name) if base_src else linear([s.get(name) for s in sources], [1.0] * len(sources))
        writer.add(name, tensor)
    dtype = sources[0].get("model.embed_tokens.weight").dtype
    for layer in range(cfg.num_hidden_layers):
        for name, tensor in expert_tensors(sources, layer).items():
            writer.add(name, tensor)
        writer.add(f"model.layers.{layer}.mlp.gate.weight", torch.zeros(len(experts), cfg.hidden_size, dtype=dtype))
    writer.close()
    copy_non_weights(experts[0], out)
    cfg.dtype = dtype
    cfg.save_pretrained(out)
    return cfg
