"""Build or load the causal LM a model entry starts from. Knows nothing of parallelism."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from occiforge.errors import UserError
from occiforge.recipe import ArchitectureConfig


def llama_config(arch: ArchitectureConfig, tok: Any) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=arch.hidden_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        num_key_value_heads=arch.num_kv_heads or arch.num_heads,
        intermediate_size=arch.intermediate_size,
        max_position_embeddings=arch.max_position_embeddings,
        rope_theta=arch.rope_theta,
        tie_word_embeddings=arch.tie_embeddings,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


def load_causal_lm(path: str | Path) -> PreTrainedModel:
    """A HF folder or hub id as a causal LM; a one-line UserError if it is not one."""
    try:
        return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - any loader failure is a user-facing "cannot load"
        raise UserError(f"cannot load a causal LM from {str(path)!r}: {str(e).splitlines()[0][:200]}") from None


def check_vocab(model: PreTrainedModel, tok: Any, where: str) -> None:
    rows = model.get_input_embeddings().num_embeddings
    if len(tok) > rows:
        raise UserError(f"{where}: tokenizer has {len(tok)} tokens but the model's embedding has {rows} rows; extend the model or use its tokenizer")


def build_model(init: str, arch: ArchitectureConfig, tok: Any, seed: int, models_dir: Path, known: set[str]) -> PreTrainedModel:
    """`scratch` builds a Llama from the recipe; a known model name or a HF path/id is loaded."""
    if init == "scratch":
        torch.manual_seed(seed)
        model = LlamaForCausalLM(llama_config(arch, tok))
    elif init in known:
        model = load_causal_lm(models_dir / init)
    else:
        model = load_causal_lm(init)
    check_vocab(model, tok, f"init {init!r}")
    return model
