"""`parallelize`: the one place that wraps a model for scale (torchtitan's pattern).

Applied in this order: activation checkpointing, torch.compile per decoder layer, FSDP2
(`fully_shard` per decoder layer, then the root, which holds the tied embeddings). Model code
never sees any of this; a single CPU process gets the model back unchanged unless asked.
"""

from __future__ import annotations

import torch
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from occiforge.dist import DistInfo
from occiforge.recipe import TrainConfig


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks of a HF causal LM (Llama, Mistral, Qwen... keep them in `model.model.layers`)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    return list(layers) if layers is not None else []


def parallelize(model: torch.nn.Module, cfg: TrainConfig, dist: DistInfo) -> torch.nn.Module:
    if cfg.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    layers = decoder_layers(model)
    if cfg.compile:
        for layer in layers:
            layer.compile()
    if dist.world_size > 1:
        bf16 = cfg.precision == "bf16"
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32)
        for layer in layers:
            fully_shard(layer, mp_policy=mp)
        fully_shard(model, mp_policy=mp)
    return model
