"""Run under torchrun (2 CPU processes, gloo) by test_distributed: `load_sharded` must give every rank
the shards of exactly the model rank 0 built, buffers included, and never call `build` elsewhere.
Writes one JSON line per family to the file named by argv[1] (rank 0)."""

from __future__ import annotations

import json
import sys

import torch
import transformers

from occiforge import checkpoint, dist
from occiforge.errors import UserError
from occiforge.recipe import TrainConfig
from occiforge.train.parallel import load_sharded

CONFIGS = {  # tied embeddings (Llama), tanh soft-capping + embedding scale (Gemma-2), untied with q/k norms (Qwen3)
    "llama": ("LlamaConfig", {"tie_word_embeddings": True}),
    "gemma2": ("Gemma2Config", {"head_dim": 16}),
    "qwen3": ("Qwen3Config", {"tie_word_embeddings": False, "head_dim": 16}),
}


def main(out: str) -> None:
    info = dist.init()
    results = []
    for family, (cls, extra) in CONFIGS.items():
        config = getattr(transformers, cls)(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2, **extra)
        built: list[int] = []

        def build() -> torch.nn.Module:
            built.append(info.rank)
            torch.manual_seed(7)
            model = transformers.AutoModelForCausalLM.from_config(config)
            model.generation_config.eos_token_id = [5, 6]
            return model

        torch.manual_seed(7)
        reference = transformers.AutoModelForCausalLM.from_config(config)  # what rank 0 builds, on every rank
        model = load_sharded(build, TrainConfig(), info)
        full = checkpoint.full_state_dict(model)
        ids = torch.arange(24).reshape(2, 12) % 96
        logits = model(input_ids=ids).logits.detach()
        with torch.no_grad():
            expect = reference(input_ids=ids).logits
        if info.is_main:
            want = reference.state_dict()
            results.append({
                "family": family, "built_on": built,
                "weights_equal": sorted(full) == sorted(want) and all(torch.equal(full[k], want[k]) for k in want),
                "buffers_equal": all(torch.equal(b, dict(reference.named_buffers())[n]) for n, b in model.named_buffers()),
                "logits_max_diff": float((logits - expect).abs().max()),
                "eos": model.generation_config.eos_token_id,
            })
        else:
            assert built == [], f"rank {info.rank} built the whole model"
            assert float((logits - expect).abs().max()) < 1e-4, f"rank {info.rank}: logits differ"
    def refuse() -> torch.nn.Module:
        raise UserError("init 'broken': cannot load")

    try:  # a UserError while rank 0 builds reaches every rank, none is left waiting in a collective
        load_sharded(refuse, TrainConfig(), info)
        raise AssertionError("load_sharded returned without a model")
    except UserError as e:
        results.append({"rank": info.rank, "error": str(e)}) if info.is_main else None
        assert str(e) == "init 'broken': cannot load", str(e)
    if info.is_main:
        with open(out, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in results)
    dist.finish()


if __name__ == "__main__":
    main(sys.argv[1])
