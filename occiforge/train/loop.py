"""The one training loop: pre-training, continual pre-training and SFT differ only in the
batches they are fed (SFT batches mask prompt tokens with label -100), never in this code.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from occiforge.recipe import OptimConfig
from occiforge.train import checkpoint
from occiforge.train.distributed import barrier

Batch = dict[str, torch.Tensor]


@dataclass
class LoopSpec:
    steps: int
    lr: float
    optim: OptimConfig
    grad_accum: int
    precision: str
    save_every: int
    log_every: int
    fingerprint: str  # a checkpoint is resumed only by the run that wrote it


def lr_at(step: int, spec: LoopSpec) -> float:
    """Linear warm-up, then cosine/linear decay to `min_lr_ratio * lr` (or constant)."""
    o = spec.optim
    warmup = min(o.warmup_steps, max(spec.steps - 1, 0))
    if step < warmup:
        return spec.lr * (step + 1) / warmup
    if o.schedule == "constant":
        return spec.lr
    progress = (step - warmup) / max(spec.steps - warmup, 1)
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if o.schedule == "cosine" else 1 - progress
    return spec.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * decay)


def make_optimizer(model: torch.nn.Module, spec: LoopSpec) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": spec.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=spec.lr, betas=spec.optim.betas, foreach=True)


def _resume(ckpt_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, spec: LoopSpec, rank: int) -> tuple[int, list[dict[str, Any]]]:
    state = checkpoint.load_state(ckpt_dir)
    if state is None or state.get("fingerprint") != spec.fingerprint:
        barrier()  # every rank reads the old state before rank 0 removes it
        if rank == 0:
            shutil.rmtree(ckpt_dir, ignore_errors=True)  # stale: from another configuration
        return 0, []
    state = checkpoint.restore(ckpt_dir, model, opt)
    return int(state["step"]), list(state["history"])


def train(
    model: torch.nn.Module,
    get_batch: Callable[[int, int], Batch],
    spec: LoopSpec,
    ckpt_dir: Path,
    on_step: Callable[[int, float], None] | None = None,
    log: Callable[[str], None] = lambda msg: None,
    rank: int = 0,
) -> list[dict[str, Any]]:
    """Train for `spec.steps` optimizer steps, resuming from `ckpt_dir` if a checkpoint of this
    exact run exists; `get_batch(step, micro)` must be deterministic for exact resumption.
    Under torchrun every rank calls this with its own batches; FSDP2 averages the gradients."""
    device = next(model.parameters()).device
    opt = make_optimizer(model, spec)
    start, history = _resume(ckpt_dir, model, opt, spec, rank)
    if start:
        log(f"resuming from step {start} ({ckpt_dir / checkpoint.LATEST})")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.precision == "bf16")
    model.train()
    for step in range(start, spec.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, spec)
        total = 0.0
        for micro in range(spec.grad_accum):
            batch = {k: v.to(device) for k, v in get_batch(step, micro).items()}
            with autocast:
                loss = model(**batch).loss / spec.grad_accum
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % spec.log_every == 0 or step == spec.steps - 1:
            history.append({"step": step, "loss": round(total, 5), "lr": opt.param_groups[0]["lr"]})
        if on_step:
            on_step(step, total)
        if (step + 1) % spec.save_every == 0 and step + 1 < spec.steps:
            checkpoint.save(ckpt_dir, model, opt, {"fingerprint": spec.fingerprint, "step": step + 1, "history": history}, rank)
    return history
