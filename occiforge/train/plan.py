"""`occiforge plan RECIPE`: what each model of a recipe costs before any GPU hour is spent.

Per planned model: tokens (steps x micro-batch x grad_accum x seq_len x world), parameters
(exact: the model is built on the meta device, from the recipe's architecture for `init: scratch`,
from the HF config for a folder or hub id, no weights read), training FLOPs (PaLM appendix B),
GPU hours at an assumed MFU, and memory per GPU under FSDP2. A model that does not fit the GPU's
memory is refused (one line, exit 2) before anything runs.

Memory model (bytes per GPU; b = micro-batch, T = seq_len, h = hidden, h_q = heads x head_dim,
h_kv = kv heads x head_dim, I = MLP width, L = layers, V = vocabulary, a = 2 in bf16, 4 in fp32):

- states: fp32 master weights, gradients and AdamW's two moments, 16 bytes/param, sharded over
  the N GPUs (FSDP2 `fully_shard` per decoder layer and the root);
- FSDP2 working set (N > 1): two decoder layers gathered in the compute dtype (current and
  prefetched) plus one layer's unsharded fp32 gradients, and the gathered root (embeddings, head);
- activations saved for backward, per token and layer: a·(2h + 2h_q + 2h_kv + 4I) (norm outputs,
  q, k, v, attention output; SwiGLU gate, up, act(gate), product) + 4·2h (HF's RMSNorm keeps its
  input in fp32). With activation checkpointing: the layer inputs a·h per token and layer, plus
  one layer's full activations while it is recomputed;
- the loss (`train.chunked_loss`, the default; `occiforge.lossfn`): one chunk of r positions'
  fp32 logits, turned into their gradient in place, and its bf16 copy, r·V·8 at most (r·V·4 is
  256 MiB on a GPU; Gemma's soft-capping adds r·V·4); the flattened last hidden states and their
  gradient kept for backward, 2·4·b·T·h (fp32 under autocast: HF's final norm returns the residual
  stream's dtype); the head weight's fp32 gradient, its compute-dtype copy and one product of a
  chunk, (4 + 2a)·V·h. With the model's own loss: b·T·V·(a + 16), the
  logits, then at the loss backward's peak four fp32 tensors of the same size (log-probabilities,
  their gradient, the logits' gradient, a copy for the head's weight gradient), as measured on CPU
  (BENCHMARKS.md); bf16 logits add their fp32 copy (+4);
- the optimizer step: none; the loop's AdamW is the fused kernel, which updates in place.

Attention is assumed to run in a fused kernel (SDPA flash / memory-efficient): no T² scores.
Checked against a measured CPU peak in BENCHMARKS.md ("Plan: memory estimate versus measured").
Nothing here imports torch at module level: `occiforge --help` stays light.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from occiforge.errors import UserError
from occiforge.recipe import PlannedModel, Recipe

# GPU memory as the driver reports it (nvidia-smi, MiB) and dense bf16 peak FLOP/s (no sparsity)
GPUS: dict[str, tuple[int, float]] = {
    "H100": (81_559, 989e12),
    "H200": (143_771, 989e12),
    "A100": (81_920, 312e12),  # the 80 GB part
    "A100-80": (81_920, 312e12),
    "A100-40": (40_960, 312e12),
}
# OLMo-core's measured MFU for its 1B model on H100 (39-40%; its 7B reaches 47-48%); occiforge's own
# GPU check (100M Llama on one H200, BENCHMARKS.md) reached about 20%, too small a model to say more
DEFAULT_MFU = 0.40
RESERVE = 0.10  # of the GPU's memory kept free: CUDA context, NCCL buffers, allocator fragmentation
GIB = 2**30


@dataclass
class Shape:
    """What the estimates need from a model's config."""

    params: int  # all parameters
    embedding: int  # input-embedding parameters (left out of 6·N, as monitor.flops_per_token does)
    layer: int  # parameters of one decoder layer
    layers: int
    hidden: int
    q_width: int  # heads x head_dim
    kv_width: int
    mlp: int
    vocab: int


@dataclass
class Estimate:
    name: str
    key: str
    steps: int
    tokens: int
    shape: Shape
    flops: float
    gpu_hours: float
    memory: dict[str, float]  # bytes per GPU, by part
    total: float  # bytes per GPU with the recipe's activation checkpointing setting


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("--gpus", type=int, default=1, help="GPUs the models train on (torchrun world size; default 1)")
    p.add_argument("--gpu-type", default="H100", type=str.upper, choices=list(GPUS), help="memory and peak FLOP/s (default H100)")
    p.add_argument("--mfu", type=float, default=DEFAULT_MFU,
                   help=f"model FLOPs utilisation assumed for GPU hours (default {DEFAULT_MFU}: OLMo-core's 1B on H100)")


def shape_of(config: Any) -> Shape:
    """Exact parameter counts of a HF causal-LM config: the model is built on the meta device."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    cfg = config.get_text_config()
    params = sum(p.numel() for p in model.parameters())  # tied weights are one parameter
    embedding = model.get_input_embeddings().weight.numel()
    layers = list(model.model.layers)
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    return Shape(params=params, embedding=embedding, layer=sum(p.numel() for p in layers[0].parameters()),
                 layers=len(layers), hidden=cfg.hidden_size, q_width=heads * head_dim, kv_width=kv * head_dim,
                 mlp=cfg.intermediate_size, vocab=model.get_input_embeddings().weight.shape[0])


def _scratch_config(r: Recipe) -> Any:
    from transformers import LlamaConfig

    arch = r.train.architecture
    vocab = r.tokenizer.vocab_size
    if r.tokenizer.pretrained:
        from occiforge.lm import check_available, load_tokenizer

        check_available(r.tokenizer.pretrained, "tokenizer.pretrained")
        vocab = len(load_tokenizer(r.tokenizer.pretrained))
    if r.tokenizer.extend is not None:
        vocab += r.tokenizer.extend.new_tokens  # at most this many rows are added
    return LlamaConfig(vocab_size=vocab, hidden_size=arch.hidden_size, num_hidden_layers=arch.num_layers,
                       num_attention_heads=arch.num_heads, num_key_value_heads=arch.num_kv_heads or arch.num_heads,
                       intermediate_size=arch.intermediate_size, max_position_embeddings=arch.max_position_embeddings,
                       tie_word_embeddings=arch.tie_embeddings)


def _external_config(r: Recipe, pm: PlannedModel) -> Any:
    from occiforge.lm import check_available, load_config

    check_available(pm.init, f"models.{pm.key}.init")  # offline and not cached: one line at once
    config = load_config(pm.init)
    if r.tokenizer.extend is not None:  # the embedding grows by at most the new tokens
        text = config.get_text_config()
        text.vocab_size += r.tokenizer.extend.new_tokens
    return config


def flops_per_token(s: Shape, seq_len: int) -> float:
    """6·N (weights except the input embedding, forward + backward) + 12·L·(heads·head_dim)·T (attention)."""
    return 6.0 * (s.params - s.embedding) + 12.0 * s.layers * s.q_width * seq_len


def memory(s: Shape, r: Recipe, world: int, device: str = "cuda") -> dict[str, float]:
    """Bytes per GPU (or per process on `device`) by part (see the module docstring)."""
    cfg = r.train
    b, t = cfg.batch_size, cfg.seq_len
    a = 2 if cfg.precision == "bf16" else 4
    per_layer_token = a * (2 * s.hidden + 2 * s.q_width + 2 * s.kv_width + 4 * s.mlp) + 4 * 2 * s.hidden
    layer_acts = b * t * per_layer_token
    working = 0.0
    if world > 1:
        root = s.params - s.layers * s.layer
        working = 2 * s.layer * a + 4 * s.layer + root * a
    return {
        "states": 16 * s.params / world,
        "fsdp_working": working,
        "activations": s.layers * layer_acts,
        "activations_ckpt": s.layers * b * t * a * s.hidden + layer_acts,
        "loss": _loss_bytes(s, b, t, a, device) if cfg.chunked_loss else b * t * s.vocab * (a + 16 + (4 if a == 2 else 0)),
    }


def _loss_bytes(s: Shape, b: int, t: int, a: int, device: str) -> float:
    from occiforge.lossfn import chunk_rows

    rows = min(b * t, chunk_rows(s.vocab, device))
    return rows * s.vocab * 8 + 2 * 4 * b * t * s.hidden + (4 + 2 * a) * s.vocab * s.hidden


def total(mem: dict[str, float], checkpointing: bool) -> float:
    """Bytes per GPU in all: states, FSDP working set, loss and activations."""
    return (mem["states"] + mem["fsdp_working"] + mem["loss"]
            + mem["activations_ckpt" if checkpointing else "activations"])


def estimate(r: Recipe, gpus: int, gpu_type: str, mfu: float) -> list[Estimate]:
    from occiforge.train.trainer import model_steps

    peak = GPUS[gpu_type][1]
    cfg = r.train
    shapes: dict[str, Shape] = {}
    out = []
    for pm in r.plan():
        if pm.init in shapes:  # an earlier model of this run: its shape
            shape = shapes[pm.init]
        else:
            shape = shape_of(_scratch_config(r) if pm.init == "scratch" else _external_config(r, pm))
        shapes[pm.name] = shape
        steps = model_steps(pm, cfg, gpus)
        tokens = steps * cfg.batch_size * cfg.grad_accum * cfg.seq_len * gpus
        flops = flops_per_token(shape, cfg.seq_len) * tokens
        mem = memory(shape, r, gpus)
        out.append(Estimate(pm.name, pm.key, steps, tokens, shape, flops, flops / (peak * mfu) / 3600, mem,
                            total(mem, cfg.activation_checkpointing)))
    return out


def _num(x: float) -> str:
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def _gib(x: float) -> str:
    return f"{x / GIB:.2f} GiB"


def _hours(h: float) -> str:
    return f"{h:,.1f}" if h >= 10 else f"{h:.3g}"


def render(r: Recipe, rows: list[Estimate], gpus: int, gpu_type: str, mfu: float) -> str:
    cfg = r.train
    cap = GPUS[gpu_type][0] * 2**20
    head = (f"plan for {r.name}: {gpus} x {gpu_type} ({_gib(cap)} each, {RESERVE:.0%} kept free), MFU {mfu:.2f}, "
            f"seq_len {cfg.seq_len}, micro-batch {cfg.batch_size}, grad_accum {cfg.grad_accum}, {cfg.precision}, "
            f"activation checkpointing {'on' if cfg.activation_checkpointing else 'off'}")
    lines = [head]
    for e in rows:
        m = e.memory
        acts = m["activations_ckpt"] if cfg.activation_checkpointing else m["activations"]
        lines.append(f"{e.name} (models.{e.key}): {e.steps:,} steps, {_num(e.tokens)} tokens, {_num(e.shape.params)} parameters, "
                     f"{e.flops:.3e} FLOPs, {_hours(e.gpu_hours)} GPU hours ({_hours(e.gpu_hours / gpus)} h wall on {gpus})")
        lines.append(f"  memory per GPU: {_gib(e.total)} = states {_gib(m['states'])} "
                     f"+ FSDP working set {_gib(m['fsdp_working'])} + activations {_gib(acts)} + loss {_gib(m['loss'])}  "
                     f"(activations without checkpointing {_gib(m['activations'])}, with {_gib(m['activations_ckpt'])})")
    total_h = sum(e.gpu_hours for e in rows)
    lines.append(f"total: {_num(sum(e.tokens for e in rows))} tokens, {sum(e.flops for e in rows):.3e} FLOPs, {_hours(total_h)} GPU hours")
    return "\n".join(lines)


def check_fits(rows: list[Estimate], gpus: int, gpu_type: str) -> None:
    usable = GPUS[gpu_type][0] * 2**20 * (1 - RESERVE)
    for e in rows:
        if e.total > usable:
            raise UserError(f"models.{e.key} ({e.name}): needs about {_gib(e.total)} per GPU, more than the "
                            f"{_gib(usable)} usable on a {gpu_type} with {gpus} GPU(s); add GPUs, lower train.batch_size "
                            "(raise grad_accum) or set train.activation_checkpointing: true")


def run(args: argparse.Namespace) -> int:
    from occiforge.recipe import load_recipe

    if args.gpus < 1:
        raise UserError(f"plan: --gpus must be at least 1 (got {args.gpus})")
    if not 0 < args.mfu <= 1:
        raise UserError(f"plan: --mfu must be in (0, 1] (got {args.mfu})")
    recipe = load_recipe(args.recipe, args.overrides)
    if not recipe.models:
        raise UserError(f"{args.recipe}: plans no model (no 'models' section)")
    rows = estimate(recipe, args.gpus, args.gpu_type, args.mfu)
    print(render(recipe, rows, args.gpus, args.gpu_type, args.mfu))
    check_fits(rows, args.gpus, args.gpu_type)
    return 0

