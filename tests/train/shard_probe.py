"""Run under torchrun (2 CPU processes, gloo) by test_distributed: `load_sharded` must give every rank
the shards of exactly the model rank 0 built (resized as SFT's chat rows resize it), buffers and tied
weights included, never call `build` elsewhere, and bring any failure of rank 0's build to every rank.
A checkpoint of the sharded model must rebuild it (`empty_model` + `checkpoint.restore`) just as whole. Each rank writes its findings, one JSON line per case, to argv[1] + "." + its rank."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import transformers

from occiforge import checkpoint, dist
from occiforge.errors import UserError
from occiforge.loop import LoopSpec, make_optimizer
from occiforge.recipe import OptimConfig, TrainConfig
from occiforge.train.parallel import empty_model, load_sharded

CONFIGS = {  # tied embeddings (Llama), tanh soft-capping + embedding scale (Gemma-2), untied with q/k norms (Qwen3)
    "llama": ("LlamaConfig", {"tie_word_embeddings": True}),
    "gemma2": ("Gemma2Config", {"head_dim": 16}),
    "qwen3": ("Qwen3Config", {"tie_word_embeddings": False, "head_dim": 16}),
}
SPEC = LoopSpec(steps=1, lr=1e-3, optim=OptimConfig(), grad_accum=1, precision="fp32", save_every=1, log_every=1,
                fingerprint="probe")  # the loop's optimizer: what a checkpoint holds


def _make(config: transformers.PretrainedConfig) -> torch.nn.Module:
    torch.manual_seed(7)
    model = transformers.AutoModelForCausalLM.from_config(copy.deepcopy(config))  # resizing changes its config
    model.resize_token_embeddings(100)  # as adding chat rows does: the config changes after it is made
    model.generation_config.eos_token_id = [5, 6]
    return model


def _family(family: str, info: dist.DistInfo, folder: Path) -> dict:
    cls, extra = CONFIGS[family]
    config = getattr(transformers, cls)(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, **extra)
    built: list[int] = []
    model = load_sharded(lambda: built.append(info.rank) or _make(config), TrainConfig(), info)
    # saved before any forward: FSDP2 keeps the root's parameters unsharded after one, which the optimizer refuses
    checkpoint.save(folder, model, make_optimizer(model, SPEC), {"step": 1}, info.rank)
    reference = _make(config)  # what rank 0 built, made again on every rank to compare with
    row = {"family": family, "built": bool(built), **_same(model, reference)}
    resumed = empty_model(folder / checkpoint.LATEST, TrainConfig(), info)  # as a resumed run builds it
    checkpoint.restore(folder, resumed, make_optimizer(resumed, SPEC))
    return {**row, "resumed": _same(resumed, reference)}


def _same(model: torch.nn.Module, reference: torch.nn.Module) -> dict:
    """How the sharded `model` compares with the whole `reference`, on every rank."""
    full = {n: p.full_tensor() for n, p in model.named_parameters()}  # a collective: every rank gathers its shards' whole
    want, buffers = dict(reference.named_parameters()), dict(reference.named_buffers())
    ids = torch.arange(24).reshape(2, 12) % 100
    with torch.no_grad():
        diff = float((model(input_ids=ids).logits - reference(input_ids=ids).logits).abs().max())
    return {"vocab": model.config.vocab_size,
            "weights_equal": sorted(full) == sorted(want) and all(torch.equal(full[k], want[k]) for k in want),
            "buffers_equal": sorted(dict(model.named_buffers())) == sorted(buffers)
                             and all(torch.equal(b.cpu(), buffers[n]) for n, b in model.named_buffers()),
            "tied": model.get_output_embeddings().weight is model.get_input_embeddings().weight,
            "logits_max_diff": diff, "eos": model.generation_config.eos_token_id}


def _failure(build: Callable[[], torch.nn.Module], info: dist.DistInfo) -> dict:
    try:
        load_sharded(build, TrainConfig(), info)
    except Exception as e:  # noqa: BLE001 - what each rank raises is the finding
        return {"raised": type(e).__name__, "message": str(e)}
    return {"raised": None}


def main(out: str) -> None:
    info = dist.init()
    rows = [_family(family, info, Path(f"{out}.ckpt-{family}")) for family in CONFIGS]

    def refuse() -> torch.nn.Module:
        raise UserError("init 'broken': cannot load")

    def crash() -> torch.nn.Module:
        raise RuntimeError("disk on fire")

    def remote() -> torch.nn.Module:  # a class from a model's own code (trust_remote_code)
        model = _make(transformers.LlamaConfig(vocab_size=96, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                               num_attention_heads=2))
        model.__class__ = type("RemoteLM", (type(model),), {"__module__": "transformers_modules.org.remote"})
        return model

    rows += [_failure(refuse, info), _failure(crash, info), _failure(remote, info)]
    with open(f"{out}.{info.rank}", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    dist.finish()


if __name__ == "__main__":
    main(sys.argv[1])
