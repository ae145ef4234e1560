"""The causal-LM loss computed beside the output projection, a chunk of positions at a time.

A HF causal LM computes logits for every position (b·T·V floats: 64 MiB for the trainer benchmark's
8 x 256 rows and 8192-token vocabulary, 1 GiB for one 8k row of a 32k vocabulary in fp32), then
log-softmax, its backward and the head's backward over all of them. Here the forward projects
`rows` positions at a time, takes their softmax once, and computes the loss's gradient with respect
to the hidden states and the head weight right away (it is known once the softmax is); backward only
scales what the forward kept (b·T·d + V·d floats). Liger-Kernel's fused linear cross-entropy does
the same in Triton, which runs on no CPU; this is plain torch, so it runs wherever the model does.
Measured (BENCHMARKS.md, "Trainer speed"): the trainer benchmark's head and loss take 118-131 ms a
step instead of HF's 154 on 2 CPU cores (the projection in chunks of 512 rows runs at ~230 GFLOP/s,
the whole 2048 x 8192 at ~110: its output leaves the cache), and the live peak halves at 4096 tokens.
Positions without a target (an SFT batch's prompts, padding) are left out before the head: on the
demo's conversations (47% of positions masked) the head and loss take 85-97 ms instead of 151-164 for
8 x 256 positions at V 8192, and a demo instruct step (forward + backward) 77-82 ms instead of 108-163.

`chunked(model)` gives a supported HF causal LM (Llama, Mistral, Qwen2/3, Gemma 1-3: a `model.model`
trunk and a bias-free head, Gemma's final logit soft-capping included) a forward that does this when
it is given labels (and the batch's `target_index`, if the caller computed it): with gradients on in
training, without them in the loop's validation (which then holds no V-wide logits either);
anything else (no labels, a model it does not know)
runs the model's own forward. The forward stays the model's, so FSDP2's hooks run around it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput

# HF causal-LM classes whose forward is trunk -> head (-> soft-capping) -> cross-entropy, nothing more
SUPPORTED = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text"})
TARGET_INDEX = "target_index"  # the batch key of `target_index(labels)`, read only by the chunked forward
_CHUNK_BYTES = {"cpu": 16 << 20, "cuda": 256 << 20}  # fp32 logits per chunk: cache-sized on CPU, big GEMMs on GPU


@dataclass
class ChunkedLMOutput(ModelOutput):
    """What the chunked forward returns: the loss and each target position's NLL (0 where masked), no logits."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    token_nll: torch.Tensor | None = None


class _LinearCrossEntropy(torch.autograd.Function):
    """loss = Σ scale_i · NLL_i over positions i; returns (loss, NLL per position, no gradient)."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, scale: torch.Tensor,
                rows: int, softcap: float | None, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        w = weight.to(dtype)  # the head's compute dtype (bf16 under autocast), cast once, not per chunk
        nll = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        with torch.autocast(hidden.device.type, enabled=False):
            for s in range(0, hidden.shape[0], rows):
                h, t, k = hidden[s : s + rows].to(dtype), targets[s : s + rows, None], scale[s : s + rows, None]
                z = F.linear(h, w).float()
                if softcap:  # Gemma: z = cap · tanh(logits / cap)
                    capped = z.div_(softcap).tanh_()
                    slope = 1 - capped * capped
                    z = capped.mul_(softcap)
                picked = z.gather(1, t).squeeze(1)
                top = z.amax(1, keepdim=True)
                # in place (the chunk's one V-wide buffer); floored at e^-70: below e^-87 exp returns subnormals,
                # which make the two products below 10x slower on x86 (measured), for probabilities under 1e-30
                p = z.sub_(top).clamp_(min=-70.0).exp_()
                total = p.sum(1, keepdim=True)
                nll[s : s + rows] = (total.log() + top).squeeze(1) - picked
                if not (need_h or need_w):
                    continue
                g = p.mul_(k / total).scatter_add_(1, t, -k)  # d loss / d logits = scale · (softmax - one-hot)
                if softcap:
                    g.mul_(slope)
                g = g.to(dtype)
                if need_h:
                    grad_h[s : s + rows] = g @ w  # type: ignore[index]
                if need_w and dtype == torch.float32:
                    grad_w.addmm_(g.t(), h)  # type: ignore[union-attr]
                elif need_w:
                    grad_w.add_(g.t() @ h)  # type: ignore[union-attr]  # bf16 products, summed over chunks in fp32
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(nll)
        return (nll * scale).sum(), nll

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, _grad_nll: torch.Tensor) -> tuple[Any, ...]:
        grad_h, grad_w = ctx.saved_tensors  # scaled in place: no second V x d (or b·T x d) buffer
        gh = grad_h.mul_(grad_loss.to(grad_h.dtype)) if grad_h is not None else None
        gw = grad_w.mul_(grad_loss).to(ctx.weight_dtype) if grad_w is not None else None
        return gh, gw, None, None, None, None, None


def target_index(labels: torch.Tensor) -> torch.Tensor:
    """Flat positions in `labels[:, 1:]` that have a target. The training loop computes it on the CPU
    labels (`TARGET_INDEX` in the batch), so that the device never waits for it."""
    return (labels[:, 1:].reshape(-1) != -100).nonzero().squeeze(1)


def causal_lm_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, count: torch.Tensor | int,
                   softcap: float | None = None, rows: int | None = None,
                   index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ next-token NLL over labels != -100) / count, and the NLL per (row, position) of `labels[:, 1:]`
    (0 where masked), from the trunk's last hidden states (b, T, d) and the head weight (V, d).
    `index`: `target_index(labels)`, computed here (a host sync on an accelerator) when not given."""
    b, t, d = hidden.shape
    targets = labels[:, 1:].reshape(-1)
    dtype = torch.get_autocast_dtype(hidden.device.type) if torch.is_autocast_enabled(hidden.device.type) else hidden.dtype
    rows = rows or chunk_rows(weight.shape[0], hidden.device.type)
    flat = hidden[:, :-1].reshape(-1, d)
    # only positions with a target go through the head: an SFT batch masks its prompts (~45% of the
    # demo's positions), whose logits would be computed for nothing
    index = target_index(labels) if index is None else index
    whole = len(index) == len(targets)  # nothing masked: no copies
    if not whole:
        flat, targets = flat.index_select(0, index), targets.index_select(0, index)
    scale = torch.ones_like(targets, dtype=torch.float32) / count  # count may be a device tensor: no sync
    if not torch.is_grad_enabled():  # validation: the head's parameter would still ask for its V x d gradient
        flat, weight = flat.detach(), weight.detach()
    loss, nll = _LinearCrossEntropy.apply(flat, weight, targets, scale, rows, softcap, dtype)
    if not whole:
        nll = torch.zeros(b * (t - 1), dtype=nll.dtype, device=nll.device).index_copy_(0, index, nll)
    return loss, nll.reshape(b, t - 1)


def chunk_rows(vocab: int, device_type: str) -> int:
    """Positions per chunk: a chunk's fp32 logits take `_CHUNK_BYTES` of the device."""
    return max(64, _CHUNK_BYTES.get(device_type, _CHUNK_BYTES["cuda"]) // (4 * vocab))


def supports(model: torch.nn.Module) -> bool:
    """Whether `model`'s forward is one `chunked` can stand in for."""
    config = getattr(model, "config", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return (getattr(config, "model_type", None) in SUPPORTED and isinstance(getattr(model, "model", None), torch.nn.Module)
            and isinstance(head, torch.nn.Linear) and head.bias is None)


@contextmanager
def chunked(model: torch.nn.Module, enabled: bool = True) -> Iterator[bool]:
    """Within the block, `model(..., labels=...)` computes the loss chunk by chunk
    (`ChunkedLMOutput`); yields whether it does (False: unsupported model or not enabled)."""
    if not (enabled and supports(model)):
        yield False
        return
    prior, own = model.__dict__.get("forward"), model.forward  # an instance forward set by someone else comes back after
    softcap = getattr(model.config, "final_logit_softcapping", None)

    def forward(*args: Any, labels: torch.Tensor | None = None, num_items_in_batch: torch.Tensor | int | None = None,
                **kwargs: Any) -> Any:
        index = kwargs.pop(TARGET_INDEX, None)
        if args or labels is None:  # positional calls keep HF's own meaning
            return own(*args, labels=labels, num_items_in_batch=num_items_in_batch, **kwargs)
        hidden = model.model(**kwargs).last_hidden_state
        count = num_items_in_batch if num_items_in_batch is not None else (labels[:, 1:] != -100).sum().clamp_min(1)
        loss, nll = causal_lm_loss(hidden, model.get_output_embeddings().weight, labels, count, softcap, index=index)
        return ChunkedLMOutput(loss=loss, token_nll=nll)

    model.forward = forward  # an instance attribute: nn.Module.__call__ (and FSDP2's hooks) run it
    try:
        yield True
    finally:
        del model.forward
        if prior is not None:
            model.forward = prior
