"""`parallelize`: the one place that wraps a model for scale (torchtitan's pattern).

Applied in this order: activation checkpointing, torch.compile per decoder layer, FSDP2
(`fully_shard` per decoder layer, then the root, which holds the tied embeddings). Model code
never sees any of this; a single CPU process gets the model back unchanged unless asked.

`load_sharded`: under FSDP2 only rank 0 builds (loads) the whole model in host RAM; the other
ranks build its structure on the meta device, shard it, and receive their shards from rank 0
(torch's `set_model_state_dict(broadcast_from_rank0=True)`, torchtune's pattern). Host RAM per
node is one fp32 model plus shards, not one model per rank (8 x 27 GiB for a 7B on an 8-GPU node).

`empty_model`: a resumed run builds the model on every rank from the config its checkpoint keeps,
allocates it empty and lets the checkpoint fill it: nothing reads the model it started from again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    set_model_state_dict,
)
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from transformers import AutoModelForCausalLM, GenerationConfig

from occiforge import checkpoint
from occiforge.dist import DistInfo
from occiforge.errors import UserError
from occiforge.lm import load_config, runs_own_code
from occiforge.recipe import TrainConfig


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks of a HF causal LM (Llama, Mistral, Qwen... keep them in `model.model.layers`)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    return list(layers) if layers is not None else []


def parallelize(model: torch.nn.Module, cfg: TrainConfig, dist: DistInfo) -> torch.nn.Module:
    if cfg.activation_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x; the older name goes in v6
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    layers = decoder_layers(model)
    if cfg.compile:
        # every decoder layer of every model in the process runs one function (transformers' checkpointing
        # wrapper), so all share one cache of compiled variants (8 by default): the models trained earlier
        # in this process must not use it up, or this one runs uncompiled after a single warning
        torch._dynamo.reset()
        for layer in layers:
            layer.compile()
    if dist.world_size > 1:
        bf16 = cfg.precision == "bf16"
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32)
        for layer in layers:
            fully_shard(layer, mp_policy=mp)
        fully_shard(model, mp_policy=mp)
    return model


def _from_rank0(build: Callable[[], torch.nn.Module], dist: DistInfo) -> tuple[torch.nn.Module | None, torch.nn.Module]:
    """Rank 0's built model (None elsewhere) and, on every rank, an empty meta-device model of the same
    structure and configuration. Any failure while rank 0 builds reaches every rank (none waits forever)."""
    full, payload, failure = None, None, None
    if dist.is_main:
        try:
            full = build()
            if runs_own_code(full):  # other ranks cannot rebuild its class
                raise UserError(f"{type(full).__name__} runs its own code (trust_remote_code): under FSDP2 only models "
                                "transformers implements can be loaded; train it in one process")
            payload = (full.config, full.generation_config, next(full.parameters()).dtype, None)
        except Exception as e:  # noqa: BLE001 - every failure must reach the ranks waiting below
            failure = e
            payload = (None, None, None, str(e) if isinstance(e, UserError) else f"rank 0 could not build the model: {type(e).__name__}: {e}")
    config, generation, dtype, error = _from_main(payload)
    if failure is not None:
        raise failure  # rank 0: the original, with its traceback for a bug
    if error is not None:
        raise UserError(error)
    empty = meta_model(config, dtype)
    empty.generation_config = generation
    return full, empty


def meta_model(config: Any, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """An empty (meta-device) causal LM of `config`: its structure, no memory."""
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, attn_implementation=config._attn_implementation, dtype=dtype)


def empty_model(folder: Path, cfg: TrainConfig, dist: DistInfo) -> torch.nn.Module:
    """The model of the checkpoint in `folder` (its `config.json`, dtype included, and generation config), wrapped
    by `parallelize` and allocated on this rank's device, uninitialised: `checkpoint.restore` fills every weight
    and buffer. Same on every rank: nothing is broadcast."""
    config = load_config(folder)  # no remote code: a checkpoint keeps the config of transformers' models only
    model = meta_model(config, config.dtype)
    if (folder / checkpoint.GENERATION).is_file():
        model.generation_config = GenerationConfig.from_dict(json.loads((folder / checkpoint.GENERATION).read_text()))
    model.config.use_cache = False
    model = parallelize(model, cfg, dist)
    model.to_empty(device=dist.device)
    if dist.world_size == 1:
        model.tie_weights()  # to_empty gives each module its own tensor; FSDP2 keeps a tied pair one parameter
    return model


def _agree_on_buffers(full: torch.nn.Module | None, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Rank 0's buffers by name, after every rank has learnt that the two models have the same ones."""
    own = dict(full.named_buffers()) if full is not None else {}
    differ = _from_main(sorted(set(dict(model.named_buffers())) ^ set(own)) if full is not None else None)
    if differ:
        raise RuntimeError(f"the sharded model's buffers differ from rank 0's model: {differ[:5]}")
    return own


def _from_main(obj: Any) -> Any:
    """Rank 0's `obj` (picklable), on every rank."""
    box = [obj]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def load_sharded(build: Callable[[], torch.nn.Module], cfg: TrainConfig, dist: DistInfo) -> torch.nn.Module:
    """The model `build()` makes on rank 0, wrapped by `parallelize` and sharded across ranks, without
    any other rank ever holding it whole. Weights travel as rank 0's state dict, one tensor at a time;
    buffers outside the state dict (rotary `inv_freq`) are broadcast from rank 0 too."""
    full, model = _from_rank0(build, dist)
    model.config.use_cache = False
    model = parallelize(model, cfg, dist)
    model.to_empty(device=dist.device)
    own = _agree_on_buffers(full, model)
    weights = full.state_dict() if full is not None else {}
    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    for name, buf in model.named_buffers():
        if full is not None:
            buf.copy_(own[name])
        torch_dist.broadcast(buf, src=0)
    return model
