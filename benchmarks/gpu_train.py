"""GPU training throughput of the one loop: a ~1B Llama in bf16, sequence 4096, compile, FSDP2.

    torchrun --nproc_per_node 1 benchmarks/gpu_train.py [--steps 30] [--tiny]

Runs occiforge's own path (`parallelize` with compile, the loop in `occiforge.loop`, bf16
autocast, fp32 master weights, AdamW) and, as a second variant, the same with FSDP2
(`fully_shard` per decoder layer and root, bf16 params / fp32 reduce) applied by hand, since
`parallelize` leaves a single process unsharded. Reports tokens/s (median over timed steps after
warm-up), MFU against the dense bf16 peak of the card (H100/H200 989 TFLOP/s, A100 312), with
model FLOPs per token from `occiforge.train.plan.flops_per_token` (6 × the weights but the input
embedding + 12·L·h·T for attention, PaLM appendix B; the figure `occiforge plan` uses), and peak memory.
`--variants eager` leaves compile off; a variant ending in `+model-loss` (e.g. `compile+model-loss`)
uses the model's own loss instead of the chunked one (`train.chunked_loss: false`). Each line also prints `occiforge plan`'s memory estimate
for the same model, sequence and micro-batch, to compare with the measured peak.
`--tiny` runs a small model on CPU to check the script itself.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from occiforge.dist import DistInfo
from occiforge.loop import LoopSpec, train
from occiforge.recipe import OptimConfig, TrainConfig
from occiforge.train.parallel import decoder_layers, parallelize
from occiforge.train.plan import flops_per_token as plan_flops

PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def _config(tiny: bool, seq: int) -> LlamaConfig:
    if tiny:
        return LlamaConfig(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           intermediate_size=128, max_position_embeddings=seq, tie_word_embeddings=False)
    # ~1.1B parameters: TinyLlama-1.1B's shape (22 layers, 2048 wide, GQA 32/4, 5632 MLP, 32k vocab)
    return LlamaConfig(vocab_size=32000, hidden_size=2048, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                       intermediate_size=5632, max_position_embeddings=seq, tie_word_embeddings=False)


def _fsdp(model: torch.nn.Module) -> torch.nn.Module:
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for layer in decoder_layers(model):
        fully_shard(layer, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    return model


def _plan_gib(cfg: LlamaConfig, args: argparse.Namespace, chunked: bool) -> float:
    """`occiforge plan`'s memory estimate for this model, sequence and micro-batch on one GPU."""
    from occiforge.recipe import validate_tree
    from occiforge.train.plan import memory, shape_of, total

    r = validate_tree({"name": "gpu", "languages": ["en"], "data": {"sources": [{"name": "d", "path": "builtin:demo"}]},
                       "train": {"seq_len": args.seq, "batch_size": args.batch, "precision": "bf16",
                                 "chunked_loss": chunked}}, "gpu_train")
    return total(memory(shape_of(cfg), r, 1), checkpointing=False) / 2**30


def run(variant: str, args: argparse.Namespace, device: str) -> dict[str, float]:
    torch.manual_seed(0)
    cfg = _config(args.tiny, args.seq)
    model = LlamaForCausalLM(cfg).to(device)
    model.config.use_cache = False
    n_params = sum(p.numel() for p in model.parameters())
    chunked = not variant.endswith("+model-loss")
    variant = variant.removesuffix("+model-loss")
    model = parallelize(model, TrainConfig(compile=not args.tiny and variant != "eager", precision="bf16"), DistInfo.single())
    if variant == "fsdp2+compile":
        model = _fsdp(model)
    gen = torch.Generator().manual_seed(0)
    data = torch.randint(0, cfg.vocab_size, (args.steps + 1, args.batch, args.seq), generator=gen)
    flops_per_token = plan_flops(cfg, args.seq)
    stamps: list[float] = []

    def on_step(step: int, loss: float) -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    spec = LoopSpec(steps=args.steps, lr=3e-4, optim=OptimConfig(warmup_steps=5), grad_accum=1, precision="bf16",
                    save_every=10**9, log_every=10**9, fingerprint="gpu-train", chunked_loss=chunked)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train(model, lambda step, micro: {"input_ids": data[step], "labels": data[step]}, spec, Path(tmp), on_step=on_step)
    warm = min(args.warmup, len(stamps) - 2)
    per_step = statistics.median(b - a for a, b in zip(stamps[warm:], stamps[warm + 1 :]))
    tokens = args.batch * args.seq / per_step
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    peak = next((v for k, v in PEAKS.items() if k in name), None)
    return {"params_b": n_params / 1e9, "plan_gib": _plan_gib(cfg, args, chunked), "tokens_per_s": tokens, "mfu": tokens * flops_per_token / peak if peak else float("nan"),
            "first_step_s": stamps[0] - t0, "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else 0.0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=4096)
    p.add_argument("--variants", default="compile,compile+model-loss,fsdp2+compile")
    p.add_argument("--tiny", action="store_true")
    args = p.parse_args()
    if args.tiny:
        args.seq, args.batch, args.steps, args.warmup = 64, 2, 6, 2
    device = "cpu" if args.tiny or not torch.cuda.is_available() else "cuda:0"
    if "WORLD_SIZE" in os.environ and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    if device.startswith("cuda"):
        torch.cuda.set_device(0)
        print(torch.cuda.get_device_name(), "torch", torch.__version__)
    for variant in args.variants.split(","):
        r = run(variant, args, device)
        print(f"{variant:15s} {r['params_b']:.2f}B params, batch {args.batch} x {args.seq}: {r['tokens_per_s']:,.0f} tokens/s, "
              f"MFU {100 * r['mfu']:.1f}%, first step {r['first_step_s']:.1f}s, peak {r['peak_gib']:.1f} GiB "
              f"(plan estimate {r['plan_gib']:.1f} GiB)", flush=True)


if __name__ == "__main__":
    main()
