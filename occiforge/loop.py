"""The one training loop: pre-training, continual pre-training and SFT differ only in the
batches they are fed (SFT batches mask prompt tokens with label -100), never in this code.

It lives in the core, not in `occiforge.train`, because more than one stage trains: the train
stage trains its models, the moe stage briefly trains a mixture (its routers, or all of it).
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from occiforge import checkpoint, lossfn
from occiforge.dist import barrier
from occiforge.errors import Stopped, UserError
from occiforge.recipe import OptimConfig

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
    groups: tuple[str, ...] = ()  # names of batch["groups"] values (languages): loss per group on logged steps
    flops_per_token: float | None = None  # model FLOPs per trained token: MFU where the device's peak is known
    peak_flops: float | None = None  # dense peak FLOP/s of one rank's device
    val_every: int | None = None  # steps between `hooks.validate` calls (and at the last step)
    chunked_loss: bool = True  # the loss beside the head, chunk by chunk (occiforge.lossfn), where the model allows


@dataclass
class Hooks:
    """What the caller watches or decides, without the loop knowing how: logging sinks, validation, stopping."""

    on_log: Callable[[dict[str, Any]], None] | None = None  # every logged record, as it is made
    validate: Callable[[torch.nn.Module], dict[str, float]] | None = None  # held-out loss per language
    should_stop: Callable[[], bool] | None = None  # e.g. a signal arrived
    stop_reason: Callable[[], tuple[str, int]] = lambda: ("stopped", 0)  # (message, exit code) once it has


def lr_at(step: int, spec: LoopSpec) -> float:
    """Linear warm-up from zero (every model re-warms: continual pre-training wants it), then cosine or
    linear decay to `min_lr_ratio * lr`, constant, or WSD: stable at lr, then a linear decay over the
    last `decay_fraction` of the steps, which lets a run be extended from any stable-phase checkpoint."""
    o = spec.optim
    warmup = min(o.warmup_steps, max(spec.steps - 1, 0))
    if step < warmup:
        return spec.lr * (step + 1) / warmup
    if o.schedule == "constant":
        return spec.lr
    if o.schedule == "wsd":
        decay = max(1, round(o.decay_fraction * (spec.steps - warmup)))
        into = step - (spec.steps - decay) + 1  # 1..decay over the decay phase: the last step is at the floor
        return spec.lr if into <= 0 else spec.lr * (1 - (1 - o.min_lr_ratio) * into / decay)
    progress = (step - warmup) / max(spec.steps - warmup, 1)
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if o.schedule == "cosine" else 1 - progress
    return spec.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * decay)


def make_optimizer(model: torch.nn.Module, spec: LoopSpec) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": spec.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # one fused kernel over all parameters: on CPU 3 ms a step for the trainer benchmark's 5M parameters,
    # where foreach takes 24 ms (its per-op temporaries); torchtitan uses it on GPU with FSDP2 too
    fused = {p.device.type for p in decay + no_decay} <= {"cpu", "cuda"}
    return torch.optim.AdamW(groups, lr=spec.lr, betas=spec.optim.betas, fused=fused, foreach=not fused)


def _resume(ckpt_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, spec: LoopSpec, rank: int,
            log: Callable[[str], None]) -> tuple[int, list[dict[str, Any]]]:
    state = checkpoint.usable(ckpt_dir, log, rank)
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
    hooks: Hooks | None = None,
) -> list[dict[str, Any]]:
    """Train for `spec.steps` optimizer steps, resuming from `ckpt_dir` if a checkpoint of this
    exact run exists; `get_batch(step, micro)` must be deterministic for exact resumption.
    Under torchrun every rank calls this with its own batches; FSDP2 averages the gradients.
    A non-finite loss stops the run (UserError naming the step; the last good checkpoint stays);
    `hooks.should_stop()` turning true writes a checkpoint and raises `Stopped`.
    The loss is computed beside the head where the model allows (`occiforge.lossfn`; `spec.chunked_loss`)."""
    with lossfn.chunked(model, spec.chunked_loss):
        return _train(model, get_batch, spec, ckpt_dir, on_step, log, rank, hooks or Hooks())


def _train(model: torch.nn.Module, get_batch: Callable[[int, int], Batch], spec: LoopSpec, ckpt_dir: Path,
           on_step: Callable[[int, float], None] | None, log: Callable[[str], None], rank: int, hooks: Hooks) -> list[dict[str, Any]]:
    device = next(model.parameters()).device
    opt = make_optimizer(model, spec)
    start, history = _resume(ckpt_dir, model, opt, spec, rank, log)
    if start:
        log(f"resuming from step {start} ({ckpt_dir / checkpoint.LATEST})")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.precision == "bf16")
    world = torch.distributed.get_world_size() if torch.distributed.is_available() and torch.distributed.is_initialized() else 1
    last = history[-1]["loss"] if history else math.nan  # what on_step sees between logged steps
    meter = _Meter(device, world)
    model.train()
    for step in range(start, spec.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, spec)
        validating = hooks.validate is not None and spec.val_every is not None and (
            (step + 1) % spec.val_every == 0 or step == spec.steps - 1)
        logged = step % spec.log_every == 0 or step == spec.steps - 1 or validating
        saving = (step + 1) % spec.save_every == 0 and step + 1 < spec.steps
        micros = [get_batch(step, micro) for micro in range(spec.grad_accum)]
        total, by_group = _accumulate(model, micros, device, autocast, world, len(spec.groups) if logged else 0)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), spec.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        meter.count(micros)
        if logged or saving:
            loss, values = _read(total, norm, by_group, world)  # the step's only host<->device sync
            if not math.isfinite(loss):
                raise _diverged(loss, step, ckpt_dir)
        if logged:
            last = loss
            record = {"step": step, "loss": round(loss, 5), "lr": opt.param_groups[0]["lr"], **meter.read(spec, values, step)}
            if validating:
                record["val_loss"] = _validate(model, hooks.validate)  # type: ignore[arg-type]
            history.append(record)
            if hooks.on_log:
                hooks.on_log(record)
        if on_step:
            on_step(step, last)
        if saving:
            checkpoint.save(ckpt_dir, model, opt, {"fingerprint": spec.fingerprint, "step": step + 1, "history": history}, rank)
        if step + 1 < spec.steps and _stop_now(hooks, world, logged, device):
            checkpoint.save(ckpt_dir, model, opt, {"fingerprint": spec.fingerprint, "step": step + 1, "history": history}, rank)
            reason, code = hooks.stop_reason()
            raise Stopped(f"{reason}: checkpoint at step {step + 1} written to {ckpt_dir / checkpoint.LATEST}; "
                          "run the same command again to resume", code)
    return history


def _diverged(loss: float, step: int, ckpt_dir: Path) -> UserError:
    path = ckpt_dir / checkpoint.LATEST / "trainer_state.json"
    state = json.loads(path.read_text()) if path.is_file() else None
    kept = f"the last good checkpoint (step {state['step']}) is kept in {ckpt_dir}" if state else "no checkpoint was written"
    return UserError(f"loss is {loss} at step {step}: training stopped; {kept}; lower the learning rate or check the data")


def _stop_now(hooks: Hooks, world: int, logged: bool, device: torch.device) -> bool:
    """Whether to stop after this step; under torchrun the ranks agree at logged steps, so they all
    write the same checkpoint (one rank seeing the signal first must not leave the others waiting)."""
    if hooks.should_stop is None:
        return False
    if world == 1:
        return hooks.should_stop()
    if not logged:
        return False
    flag = torch.tensor([int(hooks.should_stop())], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def _validate(model: torch.nn.Module, validate: Callable[[torch.nn.Module], dict[str, float]]) -> dict[str, float]:
    model.eval()
    try:
        with torch.no_grad():
            return {k: round(v, 5) for k, v in validate(model).items()}
    finally:
        model.train()


def _accumulate(model: torch.nn.Module, micros: list[Batch], device: torch.device, autocast: torch.autocast, world: int,
                groups: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward every micro-batch of one step with loss = (sum of token NLLs) / (step's target tokens),
    exact under -100 masking whatever the split; returns this rank's share of the loss, detached, and
    with `groups`, the summed NLL and target count per group (2 x groups) from the same logits."""
    count = _target_count(micros, device, world)
    total = torch.zeros((), device=device)
    stats = torch.zeros(2, groups, device=device)
    for micro in micros:
        batch = {k: _to_device(v, device) for k, v in micro.items() if k != "groups"}  # groups: for logging only
        with autocast:
            # HF's causal-LM loss sums token NLLs and divides by num_items_in_batch (loss_utils.fixed_cross_entropy);
            # FSDP2 then averages gradients over ranks, which `* world` undoes.
            # no KV cache: training needs none, and with one transformers ignores packed position_ids
            out = model(**batch, use_cache=False, num_items_in_batch=count)
        loss = out.loss * world
        loss.backward()
        total += loss.detach()
        if groups and "groups" in micro:
            nll = getattr(out, "token_nll", None)  # the chunked loss gives it; other models give logits
            nll = _token_nll(out.logits.detach(), batch["labels"]) if nll is None else nll
            stats += _group_nll(nll, batch["labels"], _to_device(micro["groups"], device), groups)
    return total, stats


def _token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(b, T-1): next-token NLL per position, 0 where the label is -100."""
    targets = labels[:, 1:]
    nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets.clamp_min(0), reduction="none")
    return nll * (targets != -100)


def _group_nll(nll: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor, n: int) -> torch.Tensor:
    """(2, n): summed next-token NLL and target count per group of rows."""
    out = torch.zeros(2, n, device=nll.device)
    out[0].index_add_(0, groups, nll.sum(1))
    out[1].index_add_(0, groups, (labels[:, 1:] != -100).sum(1).float())
    return out


def _target_count(micros: list[Batch], device: torch.device, world: int) -> torch.Tensor:
    """Target tokens of the step over all ranks: labels after the causal shift that are not -100.
    Counted on the CPU labels and kept on the device (a fill, not a copy), so reading it never syncs; a
    device tensor also makes HF divide exactly like its mean reduction, and gives compiled layers one type."""
    local = sum(int((m["labels"][:, 1:] != -100).sum()) for m in micros)
    count = torch.full((), local, dtype=torch.long, device=device)
    if world > 1:
        torch.distributed.all_reduce(count)  # queued on the stream: the host does not wait for it
    return count.clamp_(min=1)  # an all-masked step gets zero loss and gradients, not NaN


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    # a pageable host->GPU copy waits for the stream to drain; pinned + non_blocking does not
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _read(total: torch.Tensor, norm: torch.Tensor, stats: torch.Tensor, world: int) -> tuple[float, dict[str, Any]]:
    """The step's loss over all ranks (every rank holds its sum of NLLs x world / global count), the
    gradient norm and the per-group sums, read back in one transfer."""
    vec = torch.cat([total.reshape(1).float(), stats.reshape(-1)])
    if world > 1:
        torch.distributed.all_reduce(vec)
        vec[0] /= world
    norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP2: a replicated DTensor
    values = torch.cat([vec, norm.reshape(1).float().to(vec.device)]).tolist()
    n = (len(values) - 2) // 2
    return values[0], {"grad_norm": values[-1], "sums": values[1 : 1 + n], "counts": values[1 + n : 1 + 2 * n]}


class _Meter:
    """Throughput between logged steps (tokens/s, MFU where the peak is known) and peak memory."""

    def __init__(self, device: torch.device, world: int):
        self.device, self.world = device, world
        self.tokens, self.t0 = 0, time.perf_counter()

    def count(self, micros: list[Batch]) -> None:
        self.tokens += sum(int(m["input_ids"].numel()) for m in micros) * self.world

    def read(self, spec: LoopSpec, values: dict[str, Any], step: int) -> dict[str, Any]:
        now = time.perf_counter()
        rate = self.tokens / max(now - self.t0, 1e-9)
        self.tokens, self.t0 = 0, now
        out: dict[str, Any] = {"grad_norm": round(values["grad_norm"], 5), "tokens_per_s": round(rate, 1)}
        if spec.flops_per_token and spec.peak_flops:
            out["mfu"] = round(rate / self.world * spec.flops_per_token / spec.peak_flops, 4)
        if self.device.type == "cuda":
            out["peak_mem_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        else:  # the process's peak resident set (Linux reports KiB)
            out["peak_mem_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        for name, total, count in zip(spec.groups, values["sums"], values["counts"]):
            if count:
                out[f"loss_{name}"] = round(total / count, 5)
        return out
