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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from occiforge import checkpoint, lossfn
from occiforge.dist import any_rank, barrier, world_size
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
    flops_per_token: float | None = None  # model FLOPs per processed token (padding included): MFU where the peak is known
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
    on_resume: Callable[[int], None] | None = None  # the step training actually starts at (0: from scratch)


def lr_at(step: int, spec: LoopSpec) -> float:
    """Linear warm-up from zero (every model re-warms: continual pre-training wants it), then cosine or
    linear decay to `min_lr_ratio * lr`, constant, or WSD: stable at lr, then a linear decay over the
    last `decay_fraction` of all the steps (warm-up included in the count, as documented in the recipe).
    Every decaying schedule of two steps or more is exactly at its floor on the last step. (`steps` is part
    of a model's fingerprint, so a finished WSD run is not extended by resuming it: a longer run trains anew.)"""
    o = spec.optim
    warmup = o.warmup_for(spec.steps)
    if step < warmup:
        return spec.lr * (step + 1) / warmup
    span = spec.steps - 1 - warmup  # from the first step after warm-up (at lr) to the last (at the floor)
    if o.schedule == "constant" or span <= 0:  # span 0: a one-step run, at lr
        return spec.lr
    if o.schedule == "wsd":
        decay = min(max(1, round(o.decay_fraction * spec.steps)), spec.steps - warmup)
        into = step - (spec.steps - decay) + 1  # 1..decay over the decay phase: the last step is at the floor
        return spec.lr if into <= 0 else spec.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * (1 - into / decay))
    progress = min((step - warmup) / span, 1.0)
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


@dataclass
class ResumePoint:
    """Where a run starts: the trainer state of the checkpoint it resumes (its weights still to be restored),
    or None: from step 0."""

    state: dict[str, Any] | None


def resume_point(ckpt_dir: Path, fingerprint: str, rank: int, world: int, log: Callable[[str], None]) -> ResumePoint:
    """Decide once whether a run resumes: the newest whole checkpoint of this exact run and world size. One of
    another configuration is set aside; one of another world size is refused (its rows would differ)."""
    state = checkpoint.usable(ckpt_dir, log, rank)
    if state is None or state.get("fingerprint") != fingerprint:
        aside = ckpt_dir.with_name(ckpt_dir.name + ".stale")  # one kept: days of training are not deleted unasked
        if state is not None:
            log(f"checkpoint {ckpt_dir / checkpoint.LATEST} (step {state.get('step')}) is from another configuration: "
                f"set aside as {aside} (delete it to free the space), training starts over")
        barrier()  # every rank reads the old state before rank 0 moves it
        if rank == 0 and state is not None:
            shutil.rmtree(aside, ignore_errors=True)
            ckpt_dir.rename(aside)
        elif rank == 0:
            shutil.rmtree(ckpt_dir, ignore_errors=True)  # nothing usable in it
        return ResumePoint(None)
    # a row's position in the plan depends on the number of ranks: another count would re-read or skip rows
    if state.get("world_size", world) != world:
        raise UserError(f"checkpoint {ckpt_dir / checkpoint.LATEST} was written by {state['world_size']} ranks and this run "
                        f"has {world}: resume with {state['world_size']} ranks, or delete {ckpt_dir} to start over")
    return ResumePoint(state)


def train(
    model: torch.nn.Module,
    get_batch: Callable[[int, int], Batch],
    spec: LoopSpec,
    ckpt_dir: Path,
    on_step: Callable[[int, float], None] | None = None,
    log: Callable[[str], None] = lambda msg: None,
    rank: int = 0,
    hooks: Hooks | None = None,
    resume: ResumePoint | None = None,
) -> list[dict[str, Any]]:
    """Train for `spec.steps` optimizer steps, resuming from `ckpt_dir` if a checkpoint of this
    exact run exists; `get_batch(step, micro)` must be deterministic for exact resumption.
    Under torchrun every rank calls this with its own batches; FSDP2 averages the gradients.
    A non-finite loss or gradient norm stops the run (UserError naming the first bad step; the last good
    checkpoint stays, and no checkpoint is ever written from a non-finite state);
    `hooks.should_stop()` turning true writes a checkpoint and raises `Stopped`.
    `resume`: the caller's `resume_point` decision (made before it built the model), else decided here.
    The loss is computed beside the head where the model allows (`occiforge.lossfn`; `spec.chunked_loss`)."""
    with lossfn.chunked(model, spec.chunked_loss) as on:
        if on:  # the positions with a target, found on the CPU labels: the device never waits for them
            get_batch = _with_target_index(get_batch)
        return _train(model, get_batch, spec, ckpt_dir, on_step, log, rank, hooks or Hooks(), resume)


def _with_target_index(get_batch: Callable[[int, int], Batch]) -> Callable[[int, int], Batch]:
    def indexed(step: int, micro: int) -> Batch:
        batch = get_batch(step, micro)
        return {**batch, lossfn.TARGET_INDEX: lossfn.target_index(batch["labels"])}
    return indexed


def _train(model: torch.nn.Module, get_batch: Callable[[int, int], Batch], spec: LoopSpec, ckpt_dir: Path,
           on_step: Callable[[int, float], None] | None, log: Callable[[str], None], rank: int, hooks: Hooks,
           resume: ResumePoint | None) -> list[dict[str, Any]]:
    device = next(model.parameters()).device
    opt = make_optimizer(model, spec)
    world = world_size()  # 1 for work one rank does alone (`dist.local`), as the moe stage's router training
    resume = resume or resume_point(ckpt_dir, spec.fingerprint, rank, world, log)
    start, history = 0, []
    if resume.state is not None:
        state = checkpoint.restore(ckpt_dir, model, opt)
        start, history = int(state["step"]), list(state["history"])
    if start:
        log(f"resuming from step {start} ({ckpt_dir / checkpoint.LATEST})")
    if hooks.on_resume:
        hooks.on_resume(start)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.precision == "bf16")
    last = history[-1]["loss"] if history else math.nan  # what on_step sees between logged steps
    meter = _Meter(device, world)
    # the first step whose loss or gradient norm was not finite, kept on the device (no sync): spec.steps if none
    first_bad = torch.full((), spec.steps, dtype=torch.long, device=device)
    model.train()
    for step in range(start, spec.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, spec)
        # on the logging grid (step 0 included: after the first update, where the curve starts), and at the end
        validating = hooks.validate is not None and spec.val_every is not None and (
            step % spec.val_every == 0 or step == spec.steps - 1)
        logged = step % spec.log_every == 0 or step == spec.steps - 1 or validating
        saving = (step + 1) % spec.save_every == 0 and step + 1 < spec.steps
        micros = [get_batch(step, micro) for micro in range(spec.grad_accum)]
        count = _target_count(micros, device, world)
        total, by_group = _accumulate(model, micros, device, autocast, world, count, len(spec.groups) if logged else 0)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), spec.optim.grad_clip)
        first_bad = _track(first_bad, total, norm, step)
        opt.step()
        opt.zero_grad(set_to_none=True)
        meter.count(micros, count)
        if step == start:  # the first step pays once (allocations, optimizer state, compilation): not throughput
            meter.restart()
        read = None
        if logged or saving:
            read = _checked_read(total, norm, by_group, first_bad, world, step, ckpt_dir)  # one sync (a save adds the weights' check)
        if logged:
            loss, values = read  # type: ignore[misc]
            last = loss
            record = {"step": step, "loss": round(loss, 5), "lr": opt.param_groups[0]["lr"], **meter.read(spec, values, step)}
            if validating:
                with meter.paused():
                    record["val_loss"] = _validate(model, hooks.validate, autocast)  # type: ignore[arg-type]
            history.append(record)
            if hooks.on_log:
                hooks.on_log(record)
        if on_step:
            on_step(step, last)
        stopping = step + 1 < spec.steps and _stop_now(hooks, world, logged, device)
        if saving or stopping:
            if read is None:  # a stop on an unlogged step: nothing non-finite may reach a checkpoint
                _checked_read(total, norm, by_group, first_bad, world, step, ckpt_dir)
            with meter.paused():
                _save(ckpt_dir, model, opt, spec, rank, world, step, history)
        if stopping:
            reason, code = hooks.stop_reason()
            raise Stopped(f"{reason}: checkpoint at step {step + 1} written to {ckpt_dir / checkpoint.LATEST}; "
                          "run the same command again to resume", code)
    if start < spec.steps:  # the last update came after the last read: the model handed on must be finite too
        _check_weights(model, world, spec.steps - 1, ckpt_dir)
    return history


def _save(ckpt_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, spec: LoopSpec, rank: int, world: int,
          step: int, history: list[dict[str, Any]]) -> None:
    """Checkpoint after `step`, never from non-finite weights; the world size is kept, for `_resume` to check."""
    _check_weights(model, world, step, ckpt_dir)
    state = {"fingerprint": spec.fingerprint, "step": step + 1, "history": history, "world_size": world}
    checkpoint.save(ckpt_dir, model, opt, state, rank)


def _local(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of a (DTensor) value: a non-finite gradient anywhere makes some rank's part non-finite."""
    return t.to_local() if hasattr(t, "to_local") else t


def _track(first_bad: torch.Tensor, total: torch.Tensor, norm: torch.Tensor, step: int) -> torch.Tensor:
    """`first_bad`, or `step` if this step's loss or gradient norm is not finite and none was before: on the device."""
    bad = ~(torch.isfinite(total) & torch.isfinite(_local(norm).to(total.device)))
    return torch.where(bad, first_bad.clamp(max=step), first_bad)


def _checked_read(total: torch.Tensor, norm: torch.Tensor, stats: torch.Tensor, first_bad: torch.Tensor, world: int,
                  step: int, ckpt_dir: Path) -> tuple[float, dict[str, Any]]:
    """`_read`, stopping the run (the diverged error) if any step so far had a non-finite loss or gradient norm."""
    loss, values = _read(total, norm, stats, first_bad, world)
    bad = values["first_bad"]
    if bad <= step or not (math.isfinite(loss) and math.isfinite(values["grad_norm"])):
        raise _diverged(min(bad, step), step, loss, values["grad_norm"], ckpt_dir)
    return loss, values


def _check_weights(model: torch.nn.Module, world: int, step: int, ckpt_dir: Path) -> None:
    """Refuse to checkpoint non-finite weights (e.g. an overflowing update after a finite gradient): one sync, on saves only."""
    ok = torch.stack([torch.isfinite(_local(p.detach())).all() for p in model.parameters()]).all()
    if any_rank(~ok, ok.device):
        raise _diverged(step, step, math.nan, math.nan, ckpt_dir, weights=True)


def _diverged(bad: int, step: int, loss: float, norm: float, ckpt_dir: Path, weights: bool = False) -> UserError:
    path = ckpt_dir / checkpoint.LATEST / checkpoint.STATE
    state = json.loads(path.read_text()) if path.is_file() else None
    kept = f"the last good checkpoint (step {state['step']}) is kept in {ckpt_dir}" if state else "no checkpoint was written"
    if weights:
        what = f"the weights are not finite after step {step}"
    elif bad == step:
        what = f"loss is {loss} at step {step}" if not math.isfinite(loss) else f"gradient norm is {norm} at step {step}"
    else:  # found at a later read: the first bad step's own values were never read back
        what = f"loss or gradient norm is not finite from step {bad} on (loss {loss} at step {step})"
    return UserError(f"{what}: training stopped; {kept}; lower the learning rate or check the data")


def _stop_now(hooks: Hooks, world: int, logged: bool, device: torch.device) -> bool:
    """Whether to stop after this step; under torchrun the ranks agree at logged steps, so they all
    write the same checkpoint (one rank seeing the signal first must not leave the others waiting)."""
    if hooks.should_stop is None:
        return False
    if world > 1 and not logged:
        return False
    return any_rank(hooks.should_stop(), device)


def _validate(model: torch.nn.Module, validate: Callable[[torch.nn.Module], dict[str, float]],
              autocast: torch.autocast) -> dict[str, float]:
    """In the training's precision, its loss computed chunk by chunk (`lossfn.chunked`: no V-wide logits).
    Uncompiled: its batch shapes and no_grad would each compile the layers again, filling the compile
    cache that training needs (after 8 variants a compiled layer runs uncompiled for the rest of the run)."""
    model.eval()
    try:
        with torch.no_grad(), autocast, torch.compiler.set_stance("force_eager"):
            return {k: round(v, 5) for k, v in validate(model).items()}
    finally:
        model.train()


def _accumulate(model: torch.nn.Module, micros: list[Batch], device: torch.device, autocast: torch.autocast, world: int,
                count: torch.Tensor, groups: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward every micro-batch of one step with loss = (sum of token NLLs) / (step's target tokens, `count`
    from `_target_count`), exact under -100 masking whatever the split; returns this rank's share of the loss,
    detached, and with `groups`, the summed NLL and target count per group (2 x groups) from the same logits."""
    divisor = count.clamp(min=1)  # an all-masked step gets zero loss and gradients, not NaN
    total = torch.zeros((), device=device)
    stats = torch.zeros(2, groups, device=device)
    for micro in micros:
        batch = {k: _to_device(v, device) for k, v in micro.items() if k != "groups"}  # groups: for logging only
        with autocast:
            # HF's causal-LM loss sums token NLLs and divides by num_items_in_batch (loss_utils.fixed_cross_entropy);
            # FSDP2 then averages gradients over ranks, which `* world` undoes.
            # no KV cache: training needs none, and with one transformers ignores packed position_ids
            out = model(**batch, use_cache=False, num_items_in_batch=divisor)
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
    """Target tokens of the step over all ranks: labels after the causal shift that are not -100; the loss's
    divisor and the meter's tokens/s. Counted on the CPU labels and kept on the device (a fill, not a copy), so
    reading it never syncs; a device tensor also makes HF divide exactly like its mean reduction, and gives
    compiled layers one type."""
    local = sum(int((m["labels"][:, 1:] != -100).sum()) for m in micros)
    count = torch.full((), local, dtype=torch.long, device=device)
    if world > 1:
        torch.distributed.all_reduce(count)  # queued on the stream: the host does not wait for it
    return count


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    # a pageable host->GPU copy waits for the stream to drain; pinned + non_blocking does not
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _read(total: torch.Tensor, norm: torch.Tensor, stats: torch.Tensor, first_bad: torch.Tensor,
          world: int) -> tuple[float, dict[str, Any]]:
    """The step's loss over all ranks (every rank holds its sum of NLLs x world / global count), the
    gradient norm, the per-group sums and the first non-finite step (of any rank), read back in one transfer."""
    vec = torch.cat([total.reshape(1).float(), stats.reshape(-1)])
    if world > 1:
        torch.distributed.all_reduce(vec)
        vec[0] /= world
        first_bad = first_bad.clone()
        torch.distributed.all_reduce(first_bad, op=torch.distributed.ReduceOp.MIN)
    norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP2: a replicated DTensor
    # float64: a step number stays exact
    values = torch.cat([vec.double(), norm.reshape(1).double().to(vec.device), first_bad.reshape(1).double()]).tolist()
    n = (len(values) - 3) // 2
    return values[0], {"grad_norm": values[-2], "first_bad": int(values[-1]), "sums": values[1 : 1 + n],
                       "counts": values[1 + n : 1 + 2 * n]}


class _Meter:
    """Throughput between logged steps, validation and checkpoint time left out: tokens/s counts the tokens
    trained on (targets, not padding or masked prompts); MFU counts every processed token (input_ids,
    padding included), as the FLOPs are spent on them; and peak memory: the device's since this loop
    began on a GPU, the process's peak resident set (every stage and model before included) on CPU."""

    def __init__(self, device: torch.device, world: int):
        self.device, self.world = device, world
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.restart()

    def restart(self) -> None:
        """Count from now on (after the loop's first step: no figure until the next logged step)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.tokens, self.processed, self.steps, self.t0 = 0, 0, 0, time.perf_counter()

    def count(self, micros: list[Batch], targets: torch.Tensor) -> None:
        """`targets`: the step's target tokens over all ranks (`_target_count`), summed on its device and
        read at the next logged step: no sync here. Every rank's micro-batches have the same shape."""
        self.tokens = self.tokens + targets
        self.processed += sum(int(m["input_ids"].numel()) for m in micros) * self.world
        self.steps += 1

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside (validation, a checkpoint) is not training time."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.t0 += time.perf_counter() - t

    def read(self, spec: LoopSpec, values: dict[str, Any], step: int) -> dict[str, Any]:
        now = time.perf_counter()
        elapsed = max(now - self.t0, 1e-9)
        out: dict[str, Any] = {"grad_norm": round(values["grad_norm"], 5)}
        if self.steps:
            out["tokens_per_s"] = round(float(self.tokens) / elapsed, 1)
            if spec.flops_per_token and spec.peak_flops:
                out["mfu"] = round(self.processed / elapsed / self.world * spec.flops_per_token / spec.peak_flops, 4)
        self.tokens, self.processed, self.steps, self.t0 = 0, 0, 0, now
        if self.device.type == "cuda":
            out["peak_mem_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        else:  # the process's peak resident set (Linux reports KiB)
            out["peak_mem_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        for name, total, count in zip(spec.groups, values["sums"], values["counts"]):
            if count:
                out[f"loss_{name}"] = round(total / count, 5)
        return out
