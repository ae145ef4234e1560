"""Build or load the causal LM a model entry starts from. Knows nothing of parallelism.

A model loaded for a tokenizer that extends its own (`tokenizer.extend`, ids 0..V-1 identical)
gets its embeddings grown and the new rows initialised with the model's `embedding_init`; the
extension record (`extension.json`, facts only) is passed in explicitly by the train stage.
Any other vocabulary mismatch is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel

from occiforge.errors import UserError
from occiforge.lm import (
    check_vocab,
    is_local_spec,
    load_causal_lm,
    load_config,
    load_tokenizer,
)
from occiforge.recipe import ArchitectureConfig
from occiforge.train.embeddings import init_new_embeddings, sample_windows

Record = dict[str, Any]  # an extension record, as the tokenizer stage wrote it


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


def _own_tokenizer(path: str | Path) -> Any | None:
    try:
        return load_tokenizer(path)
    except UserError:  # no (loadable) tokenizer: the extension cannot be verified
        return None


def _differing_ids(a: Any, b: Any) -> int:
    """How many of the ids both tokenizers have stand for different tokens in them."""
    shared = min(len(a), len(b))
    tokens = {i: t for t, i in a.get_vocab().items() if i < shared}
    return sum(1 for t, i in b.get_vocab().items() if i < shared and tokens.get(i) != t)


def extension_of(path: str | Path, tok: Any, where: str, record: Record | None) -> Record | None:
    """`record` when `tok` extends the tokenizer saved with the model at `path`.

    None when there is no extension or the model already has the extended vocabulary. An
    extension of a different tokenizer (its first V ids differ from the model's) is refused.
    """
    own = _own_tokenizer(path) if record else None
    if record is None or own is None or own.get_vocab() == tok.get_vocab():
        return None
    base = int(record["base_vocab_size"])
    if len(own) != base or _differing_ids(own, tok):
        raise UserError(f"{where}: tokenizer.extend extended a different tokenizer than this model's ({len(own)} tokens, "
                        f"first {base} ids must match); set tokenizer.pretrained to the model's folder")
    return record


def adapt_embeddings(model: PreTrainedModel, tok: Any, path: str | Path, where: str, extension: Record | None,
                     embedding_init: str, seed: int = 0, streams: dict[str, Any] | None = None) -> None:
    """Grow and initialise embeddings for an extended tokenizer, or refuse a vocabulary mismatch.

    `streams` (language -> training token ids) feed the inits that read target-language text."""
    if (record := extension_of(path, tok, where, extension)) is not None:
        if model.get_input_embeddings().num_embeddings < int(record["base_vocab_size"]):
            raise UserError(f"{where}: the model's embedding is smaller than its own tokenizer")
        init_new_embeddings(model, record, embedding_init, seed=seed, sample=sample_windows(streams or {}, record["languages"]))
    check_vocab(model, tok, where)


def preflight_vocab(inits: list[str], tok: Any, known: set[str], extension: Record | None) -> None:
    """Before any training: refuse an external `init` whose embedding cannot hold `tok`'s ids
    unless `tok` is a verified extension of the model's own tokenizer (reads configs only)."""
    for init in inits:
        if init == "scratch" or init in known:
            continue
        rows = load_config(init).get_text_config().vocab_size
        if extension_of(init, tok, f"init {init!r}", extension) is not None:
            continue
        if len(tok) > rows:
            raise UserError(f"init {init!r}: tokenizer has {len(tok)} tokens but the model's embedding has {rows} rows; extend the model or use its tokenizer")
        own = _own_tokenizer(init) if is_local_spec(init) else None  # a hub id's tokenizer is not fetched here
        if own is not None and (differ := _differing_ids(own, tok)):  # either may have more ids
            raise UserError(f"init {init!r}: the run's tokenizer is not the model's own ({differ} of the "
                            f"{min(len(own), len(tok))} ids both have are other tokens); set tokenizer.pretrained to the model's folder")


def build_model(init: str, arch: ArchitectureConfig, tok: Any, seed: int, models_dir: Path, known: set[str],
                streams: dict[str, Any] | None = None, extension: Record | None = None,
                embedding_init: str = "decomposition-calibrated") -> PreTrainedModel:
    """`scratch` builds a Llama from the recipe; a known model name or a HF path/id is loaded
    (and adapted to an extended tokenizer with `embedding_init`, see `adapt_embeddings`)."""
    if init == "scratch":
        torch.manual_seed(seed)
        model = LlamaForCausalLM(llama_config(arch, tok))
        check_vocab(model, tok, f"init {init!r}")
        return model
    path = models_dir / init if init in known else init
    model = load_causal_lm(path)
    adapt_embeddings(model, tok, path, f"init {init!r}", extension, embedding_init, seed, streams)
    return model
