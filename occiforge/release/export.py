"""Export one model as a folder ready for the Hub: safetensors, configs, tokenizer.

The model is loaded through the core's safe loader (safetensors only, no remote code) and saved
again, so the folder holds exactly what `AutoModelForCausalLM.from_pretrained` reads: weights in
safetensors, sharded above `max_shard_size` (with `model.safetensors.index.json`),
`config.json`, `generation_config.json`, and the tokenizer files (with the chat template for an
instruct model). Training state (optimizer, logs) stays in the run.
"""

from __future__ import annotations

from pathlib import Path

from occiforge.errors import UserError
from occiforge.lm import load_causal_lm, load_tokenizer


def export_model(src: Path, dst: Path, kind: str, max_shard_size: str) -> list[str]:
    """Write the Hub folder of the model in `src` to `dst`; returns the files written."""
    from transformers import GenerationConfig

    tok = load_tokenizer(src)
    if kind == "sft" and not tok.chat_template:
        raise UserError(f"{src}: an instruct model must carry the chat template it was trained with; its tokenizer has none")
    model = load_causal_lm(src, dtype="auto")  # keep the checkpoint's dtype
    if model.generation_config is None or not model.can_generate():
        raise UserError(f"{src}: not a generative causal LM")
    if not (src / "generation_config.json").is_file():  # older checkpoints: derive it from the model config
        model.generation_config = GenerationConfig.from_model_config(model.config)
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dst), safe_serialization=True, max_shard_size=max_shard_size)
    tok.save_pretrained(str(dst))
    return sorted(p.name for p in dst.iterdir() if p.is_file())
