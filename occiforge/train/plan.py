"""`occiforge plan RECIPE`: what each model of a recipe costs before any GPU hour is spent.

Per planned model: tokens (steps x micro-batch x grad_accum x seq_len x world), parameters
(exact: the model is built on the meta device, from the recipe's architecture for `init: scratch`,
from the HF config for a folder or hub id, no weights read), training FLOPs (`flops_per_token`),
GPU hours at an assumed MFU, and memory per GPU under FSDP2. A model that does not fit the GPU's
memory, while loading or while training, is refused (one line, exit 2) before anything runs.
Only text-only causal LMs are planned: a multimodal config (Gemma3Config) is refused.

Memory model (bytes per GPU; b = micro-batch, T = seq_len, h = hidden, h_q = heads x head_dim,
h_kv = kv heads x head_dim, I = MLP width, L = layers, V = vocabulary, H = heads, a = 2 in bf16,
4 in fp32; r = the residual stream's width: 2 under FSDP2 with bf16 params (world > 1), else 4, as
fp32 params keep the residual stream and the final norm's output in fp32 under autocast):

- loading: one process builds or loads the whole model in fp32 in host RAM (under FSDP2 rank 0 only,
  `parallel.load_sharded`); on one GPU it moves to the GPU whole (4 bytes/param); under FSDP2 every
  rank shards an empty (meta) copy, allocates its shards on its GPU and receives them from rank 0 one
  tensor at a time (torch's `_broadcast_state_dict`): 4·(N/gpus + W·(1 + 1/gpus)), W the largest
  weight tensor (the embedding or head, or a fused expert block), whole in flight plus the slice
  copied for this GPU. The per-GPU figure is the larger of this and the training peak below;
- states: fp32 master weights, gradients and AdamW's two moments, 16 bytes/param, sharded over
  the N GPUs (FSDP2 `fully_shard` per decoder layer and the root);
- FSDP2 working set (N > 1): two decoder layers gathered in the compute dtype (current and
  prefetched) plus one layer's unsharded fp32 gradients, and the gathered root (embeddings, head);
- activations saved for backward, per token and layer: a·(2h + 2h_q + 2h_kv + 4I) (norm outputs,
  q, k, v, attention output; SwiGLU gate, up, act(gate), product) + 4·2h (HF's RMSNorm keeps its
  input in fp32). With activation checkpointing: the layer inputs r·h per token and layer, plus
  one layer's full activations while it is recomputed;
- attention scores, only where the model runs `eager` attention (transformers builds Gemma-2 so):
  per layer b·H·T² elements saved for backward, 4 bytes for the fp32 softmax output, + 2 for its
  bf16 copy under bf16, + a for the soft-capped scores (`attn_logit_softcapping`); and, for the
  layer in backward, two fp32 T² gradients (8 bytes). With checkpointing one layer's worth is saved
  at a time. A fused kernel (SDPA flash / memory-efficient, every other family) stores no T²;
- the loss (`train.chunked_loss`, the default; `occiforge.lossfn`): one chunk of R positions'
  fp32 logits, turned into their gradient in place, and its bf16 copy, R·V·8 at most (R·V·4 is
  256 MiB on a GPU), + R·V·4 for the soft-capping slope (Gemma's `final_logit_softcapping`); the
  flattened last hidden states and their gradient kept for backward, 2·r·b·T·h; the head weight's
  fp32 gradient, its compute-dtype copy and one product of a chunk, (4 + 2a)·V·h. With the model's
  own loss: b·T·V·(a + 16), the logits, then at the loss backward's peak four fp32 tensors of the
  same size (log-probabilities, their gradient, the logits' gradient, a copy for the head's weight
  gradient), as measured on CPU (BENCHMARKS.md); bf16 logits add their fp32 copy (+4), soft-capping
  one more (+4);
- the optimizer step: none; the loop's AdamW is the fused kernel, which updates in place.

Checked against a measured CPU peak in BENCHMARKS.md ("Plan: memory estimate versus measured").
Nothing here imports torch at module level: `occiforge --help` stays light.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Any

from occiforge.errors import UserError
from occiforge.recipe import PlannedModel, Recipe, TrainConfig

# GPU memory as the driver reports it (nvidia-smi, MiB), dense bf16 peak FLOP/s (no sparsity) and fp32 peak:
# an fp32 run's products run on the CUDA cores, not the tensor cores (torch leaves TF32 off; so does occiforge)
GPUS: dict[str, tuple[int, float, float]] = {
    "H100": (81_559, 989e12, 67e12),
    "H200": (143_771, 989e12, 67e12),
    "A100": (81_920, 312e12, 19.5e12),  # the 80 GB part
    "A100-80": (81_920, 312e12, 19.5e12),
    "A100-40": (40_960, 312e12, 19.5e12),
    "L40S": (46_068, 362e12, 91.6e12),
    "A10": (23_028, 125e12, 31.2e12),
}


def gpu_type_of(device_name: str) -> str | None:
    """The row of `GPUS` a CUDA device name is ("NVIDIA A100-SXM4-80GB" -> A100); None for a GPU not in it
    (whole names only: an A10G or a GH200 is not an A10 or an H200)."""
    return next((k for k in sorted(GPUS, key=len, reverse=True) if re.search(rf"\b{re.escape(k)}\b", device_name)), None)


def peak_flops(gpu_type: str, precision: str) -> float:
    """The dense peak FLOP/s that the run's products reach at best: bf16 on the tensor cores, fp32 without."""
    _, bf16, fp32 = GPUS[gpu_type]
    return bf16 if precision == "bf16" else fp32


# occiforge's own GPU benchmark (BENCHMARKS.md, "~1B Llama, sequence 4096", benchmarks/gpu_train.py):
# 52.9% with FSDP2 + compile on one H200, under its convention 6·N (all weights) + 12·L·h·T; in this
# module's convention (`flops_per_token`: no input embedding) the same run is 50.5%. One GPU, ~1B
# model: multi-node runs of larger models may reach less (OLMo-core: 39-40% for 1B, 47-48% for 7B).
DEFAULT_MFU = 0.50
MFU_SOURCE = "measured by occiforge's GPU benchmark on one H200, ~1B Llama, FSDP2 + compile"
RESERVE = 0.10  # of the GPU's memory kept free: CUDA context, NCCL buffers, allocator fragmentation
GIB = 2**30


@dataclass
class Shape:
    """What the estimates need from a model's config."""

    params: int  # all parameters
    embedding: int  # input-embedding parameters (a lookup: no matrix FLOPs)
    layer: int  # parameters of the largest decoder layer (an MoE may open with dense ones)
    layers: int
    hidden: int
    q_width: int  # heads x head_dim
    kv_width: int
    mlp: int
    vocab: int
    heads: int = 0
    tied: bool = False  # the head is the input embedding (counted once in `params`)
    eager: bool = False  # attention in plain PyTorch ops: T² scores kept for backward
    attn_softcap: bool = False  # Gemma-2's attn_logit_softcapping (eager only)
    logit_softcap: bool = False  # Gemma's final_logit_softcapping, applied by the loss
    windows: tuple[int | None, ...] = ()  # per layer: the sliding window, None for full attention
    tensor: int = 0  # elements of the largest weight tensor (what loading under FSDP2 holds whole)
    inactive: int = 0  # expert weights a token is not routed through (mixture of experts), summed over layers


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
    total: float  # training bytes per GPU with the recipe's activation checkpointing setting
    load: float = 0.0  # bytes per GPU while the model is placed on the GPUs (`load_bytes`)

    @property
    def peak(self) -> float:
        """Bytes per GPU at the run's peak: loading or training, whichever needs more."""
        return max(self.total, self.load)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("--gpus", type=int, default=1, help="GPUs the models train on (torchrun world size; default 1)")
    p.add_argument("--gpu-type", default="H100", type=str.upper, choices=list(GPUS), help="memory and peak FLOP/s (default H100)")
    p.add_argument("--mfu", type=float, default=DEFAULT_MFU,
                   help=f"model FLOPs utilisation assumed for GPU hours (default {DEFAULT_MFU}: {MFU_SOURCE})")


def shape_of(config: Any) -> Shape:
    """Exact parameter counts of a HF causal-LM config: the model is built on the meta device."""
    import copy

    from occiforge.train.parallel import meta_model

    model = meta_model(copy.deepcopy(config))  # a copy: from_config settles the attention implementation on its config
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise UserError(f"{type(model).__name__} ({config.model_type}): only text-only causal LMs are supported "
                        "(no decoder layers at model.layers)")
    cfg = model.config.get_text_config()
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    return Shape(params=sum(p.numel() for p in model.parameters()),  # tied weights are one parameter
                 embedding=embed.numel(), layer=max(sum(p.numel() for p in layer.parameters()) for layer in layers),
                 layers=len(layers), hidden=cfg.hidden_size, q_width=heads * head_dim, kv_width=kv * head_dim,
                 mlp=cfg.intermediate_size, vocab=embed.shape[0], heads=heads, tied=head is embed,
                 eager=model.config._attn_implementation == "eager",
                 attn_softcap=bool(getattr(cfg, "attn_logit_softcapping", None)),
                 logit_softcap=bool(getattr(cfg, "final_logit_softcapping", None)), windows=_windows(cfg, len(layers)),
                 tensor=max(p.numel() for p in model.parameters()), inactive=_inactive_experts(model, cfg))


def _inactive_experts(model: Any, cfg: Any) -> int:
    """(E - k)/E of every `experts` module's weights (Mixtral, Qwen-MoE: E experts, k per token; shared
    experts and routers are dense), 0 for a dense model."""
    k = getattr(cfg, "num_experts_per_tok", None)
    e = getattr(cfg, "num_local_experts", None) or getattr(cfg, "num_experts", None)
    if not k or not e or k >= e:
        return 0
    weights = sum(p.numel() for name, m in model.named_modules() if name.rsplit(".", 1)[-1] == "experts" for p in m.parameters())
    return weights * (e - k) // e


def _windows(cfg: Any, layers: int) -> tuple[int | None, ...]:
    """Per layer, the sliding window (Mistral: every layer; Gemma-2/3: `layer_types`), else None."""
    window = getattr(cfg, "sliding_window", None) or None
    types = getattr(cfg, "layer_types", None)
    if types:
        return tuple(window if kind == "sliding_attention" else None for kind in types)
    return (window,) * layers


def model_steps(pm: PlannedModel, cfg: TrainConfig, world: int) -> int:
    """Optimizer steps: the recipe's, or as many as the token budget needs on `world` ranks."""
    if pm.tokens is None:
        return pm.steps
    return max(1, -(-pm.tokens // (cfg.batch_size * cfg.grad_accum * cfg.seq_len * world)))


def flops_per_token(config: Any, seq_len: int) -> float:
    """Matrix FLOPs of one training step (forward + backward) per token of a HF causal-LM config.

    6·(weights of the decoder layers and final norm + V·h of the output head, tied to the input
    embedding or not; the input embedding is a lookup and is left out; of a mixture of experts only
    the k of E experts each token is routed to) + 12·Σ_layers h_q·S, where
    h_q = heads·head_dim and S = min(T, sliding window) for a windowed layer, T otherwise. No causal
    halving: S is the full span. benchmarks/gpu_train.py and the trainer's MFU use this function.
    """
    return _token_flops(shape_of(config), seq_len)


def _token_flops(s: Shape, seq_len: int) -> float:
    matrix = s.params - s.embedding - s.inactive + (s.vocab * s.hidden if s.tied else 0)
    spans = sum(min(seq_len, w) if w else seq_len for w in (s.windows or (None,) * s.layers))
    return 6.0 * matrix + 12.0 * s.q_width * spans


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
    text = config.get_text_config()
    if text is not config:  # a multimodal config (Gemma3Config: the 4B/12B/27B ids) wraps a text config
        raise UserError(f"models.{pm.key}.init: {pm.init} is a multimodal model ({type(config).__name__}, "
                        f"{config.model_type}); only text-only causal LMs are supported ({text.model_type})")
    if r.tokenizer.extend is not None:  # the embedding grows by at most the new tokens
        text.vocab_size += r.tokenizer.extend.new_tokens
    return config


def check_positions(r: Recipe, plan: list[PlannedModel]) -> None:
    """Each row is seq_len + 1 tokens: a model with fewer positions would fail (or extrapolate) mid-run. Models
    from scratch (and their descendants) have the recipe's positions, which validating the recipe checked."""
    from occiforge.lm import load_config

    window, limits = r.train.seq_len + 1, {}
    for pm in plan:
        if pm.init == "scratch":
            limits[pm.name] = None
        elif pm.init in limits:  # an earlier model of this run
            limits[pm.name] = limits[pm.init]
        else:
            limits[pm.name] = getattr(load_config(pm.init).get_text_config(), "max_position_embeddings", None)
        if limits[pm.name] is not None and window > limits[pm.name]:
            raise UserError(f"models.{pm.key} ({pm.name}): train.seq_len {r.train.seq_len} (+1 for the shifted target) "
                            f"is above the model's {limits[pm.name]} positions")


def memory(s: Shape, r: Recipe, world: int, device: str = "cuda") -> dict[str, float]:
    """Bytes per GPU (or per process on `device`) by part (see the module docstring)."""
    cfg = r.train
    b, t = cfg.batch_size, cfg.seq_len
    a = 2 if cfg.precision == "bf16" else 4
    resid = 2 if a == 2 and world > 1 else 4  # FSDP2's bf16 params make the residual stream bf16
    per_layer_token = a * (2 * s.hidden + 2 * s.q_width + 2 * s.kv_width + 4 * s.mlp) + 4 * 2 * s.hidden
    layer_acts = b * t * per_layer_token
    working = 0.0
    if world > 1:
        root = s.params - s.layers * s.layer
        working = 2 * s.layer * a + 4 * s.layer + root * a
    saved, backward = _scores_bytes(s, b, t, a)
    return {
        "states": 16 * s.params / world,
        "fsdp_working": working,
        "activations": s.layers * layer_acts,
        "activations_ckpt": s.layers * b * t * resid * s.hidden + layer_acts,
        "scores": s.layers * saved + backward,
        "scores_ckpt": saved + backward,
        "loss": _loss_bytes(s, b, t, a, resid, device) if cfg.chunked_loss else _model_loss_bytes(s, b, t, a),
    }


def _scores_bytes(s: Shape, b: int, t: int, a: int) -> tuple[float, float]:
    """Eager attention: one layer's T² tensors saved for backward, and those live in its backward."""
    if not s.eager:
        return 0.0, 0.0
    elems = b * s.heads * t * t
    return elems * (4 + (2 if a == 2 else 0) + (a if s.attn_softcap else 0)), elems * 8.0


def _loss_bytes(s: Shape, b: int, t: int, a: int, resid: int, device: str) -> float:
    from occiforge.lossfn import chunk_rows

    rows = min(b * t, chunk_rows(s.vocab, device))
    logits = rows * s.vocab * (8 + (4 if s.logit_softcap else 0))  # + the soft-capping slope
    return logits + 2 * resid * b * t * s.hidden + (4 + 2 * a) * s.vocab * s.hidden


def _model_loss_bytes(s: Shape, b: int, t: int, a: int) -> float:
    return b * t * s.vocab * (a + 16 + (4 if a == 2 else 0) + (4 if s.logit_softcap else 0))


def total(mem: dict[str, float], checkpointing: bool) -> float:
    """Training bytes per GPU in all: states, FSDP working set, loss, activations and eager scores."""
    suffix = "_ckpt" if checkpointing else ""
    return (mem["states"] + mem["fsdp_working"] + mem["loss"] + mem["activations" + suffix]
            + mem["scores" + suffix])


def estimate(r: Recipe, gpus: int, gpu_type: str, mfu: float) -> list[Estimate]:

    peak = peak_flops(gpu_type, r.train.precision)
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
        flops = _token_flops(shape, cfg.seq_len) * tokens  # flops_per_token without building the model again
        mem = memory(shape, r, gpus)
        out.append(Estimate(pm.name, pm.key, steps, tokens, shape, flops, flops / (peak * mfu) / 3600, mem,
                            total(mem, cfg.activation_checkpointing), load=load_bytes(shape, gpus)))
    check_positions(r, r.plan())  # what training refuses at its start (each init found available above)
    return out


def load_bytes(shape: Shape, gpus: int) -> float:
    """Bytes per GPU while the model is put on the GPUs (trainer `_build`; `parallel.load_sharded`: the
    shards, plus the tensor in flight whole and the slice of it taken for this GPU's shard)."""
    if gpus == 1:
        return 4.0 * shape.params
    return 4.0 * (shape.params / gpus + shape.tensor * (1 + 1 / gpus))


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
    source = f" ({MFU_SOURCE}; pass --mfu for your cluster)" if mfu == DEFAULT_MFU else ""
    head = (f"plan for {r.name}: {gpus} x {gpu_type} ({_gib(cap)} each, {RESERVE:.0%} kept free), MFU {mfu:.2f}{source}, "
            f"seq_len {cfg.seq_len}, micro-batch {cfg.batch_size}, grad_accum {cfg.grad_accum}, {cfg.precision} "
            f"(peak {peak_flops(gpu_type, cfg.precision) / 1e12:g} TFLOP/s), "
            f"activation checkpointing {'on' if cfg.activation_checkpointing else 'off'}")
    lines = [head]
    for e in rows:
        lines.append(f"{e.name} (models.{e.key}): {e.steps:,} steps, {_num(e.tokens)} tokens, {_num(e.shape.params)} parameters, "
                     f"{e.flops:.3e} FLOPs, {_hours(e.gpu_hours)} GPU hours ({_hours(e.gpu_hours / gpus)} h wall on {gpus})")
        lines.extend(_memory_lines(e, cfg.activation_checkpointing))
    total_h = sum(e.gpu_hours for e in rows)
    lines.append(f"total: {_num(sum(e.tokens for e in rows))} tokens, {sum(e.flops for e in rows):.3e} FLOPs, {_hours(total_h)} GPU hours")
    return "\n".join(lines)


def _memory_lines(e: Estimate, checkpointing: bool) -> list[str]:
    m = e.memory
    suffix = "_ckpt" if checkpointing else ""
    scores = f" + eager attention scores {_gib(m['scores' + suffix])}" if m["scores"] else ""
    peak = (f"  memory per GPU: {_gib(e.peak)}, the larger of loading {_gib(e.load)} and training {_gib(e.total)}; "
            f"host RAM while loading: {_gib(4.0 * e.shape.params)} (the fp32 model) on rank 0 only")
    parts = (f"  training: states {_gib(m['states'])} + FSDP working set {_gib(m['fsdp_working'])} "
             f"+ activations {_gib(m['activations' + suffix])}{scores} + loss {_gib(m['loss'])}  "
             f"(activations without checkpointing {_gib(m['activations'] + m['scores'])}, "
             f"with {_gib(m['activations_ckpt'] + m['scores_ckpt'])})")
    return [peak, parts]


def check_fits(rows: list[Estimate], gpus: int, gpu_type: str, r: Recipe) -> None:
    usable = GPUS[gpu_type][0] * 2**20 * (1 - RESERVE)
    where = f"the {_gib(usable)} usable on a {gpu_type}"
    for e in rows:
        if e.load > usable:
            raise UserError(f"models.{e.key} ({e.name}): loading needs about {_gib(e.load)} per GPU (the fp32 model "
                            f"{'whole' if gpus == 1 else 'sharded, plus its largest tensor whole'}), more than {where}; "
                            f"{'train on more GPUs (FSDP2 shards it)' if gpus == 1 else 'use a GPU with more memory or a smaller model'}")
        if e.total > usable:
            raise UserError(f"models.{e.key} ({e.name}): needs about {_gib(e.total)} per GPU, more than {where} with "
                            f"{gpus} GPU(s); {_remedies(r, e, usable)}")


def _remedies(r: Recipe, e: Estimate, usable: float) -> str:
    """Only what could help and the recipe has not done already."""
    fixed = e.memory["states"] + e.memory["fsdp_working"]  # no batch size or checkpointing makes these smaller
    if fixed > usable:
        return f"add GPUs: the weights, gradients and AdamW states alone need {_gib(fixed)} per GPU"
    todo = ["add GPUs"]
    if r.train.batch_size > 1:
        todo.append("lower train.batch_size (raise grad_accum)")
    if not r.train.activation_checkpointing:
        todo.append("set train.activation_checkpointing: true")
    return ", ".join(todo[:-1]) + (" or " if len(todo) > 1 else "") + todo[-1]


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
    check_fits(rows, args.gpus, args.gpu_type, recipe)
    return 0

