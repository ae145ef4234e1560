"""Training one planned model: build it, wrap it for scale, feed it batches, save it.

The batch source of each model kind is built in one place (`batch_source`); everything else
is shared by every kind (one loop, one checkpoint format, one way to save the HF folder).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from occiforge import artifacts, checkpoint
from occiforge.context import Context, hms
from occiforge.dist import DistInfo, any_rank, barrier
from occiforge.errors import Stopped, UserError
from occiforge.io import open_token_docs
from occiforge.lm import load_tokenizer, read_extension
from occiforge.loop import Hooks, LoopSpec, resume_point, train
from occiforge.recipe import OptimConfig, PlannedModel, TrainConfig
from occiforge.train import monitor, sft
from occiforge.train.model import build_model, preflight_vocab
from occiforge.train.packing import Docs, PackedMixture, PlanCache
from occiforge.train.parallel import empty_model, load_sharded, meta_model, parallelize
from occiforge.train.plan import check_positions, flops_per_token, model_steps

Batch = dict[str, torch.Tensor]
REPEAT_LIMIT = 4.0  # epochs: beyond ~4 repeated data is worth little (Muennighoff et al. 2023)


@dataclass
class Setup:
    """What every model of the run shares: tokenizer, extension record, documents per language."""

    tok: Any
    extension: dict[str, Any] | None
    docs: dict[str, Docs]
    known: set[str]
    conv_dir: Path | None  # the conversations stage's folder, when the run has sft models

    @property
    def streams(self) -> dict[str, Any]:
        return {lang: d.ids for lang, d in self.docs.items()}


def setup(ctx: Context, plan: list[PlannedModel]) -> Setup:
    """Load the shared inputs once; refuse a vocabulary mismatch or a too-long sequence before any training."""
    r = ctx.recipe
    if r.train.threads:
        torch.set_num_threads(r.train.threads)
    tok_dir = ctx.stage_dir("tokenizer")
    tok, extension = load_tokenizer(tok_dir), read_extension(tok_dir)
    known = {pm.name for pm in plan}
    for init in dict.fromkeys(pm.init for pm in plan):  # each init once, said with the first model that starts from it
        try:
            preflight_vocab([init], tok, known=known, extension=extension)
        except UserError as e:
            pm = next(pm for pm in plan if pm.init == init)
            raise UserError(f"models.{pm.key} ({pm.name}): {e}") from None
    check_positions(r, plan)
    docs = {lang: Docs(*open_token_docs(ctx.stage_dir("tokens") / lang)) for lang in r.languages}
    conv_dir = None
    if any(pm.kind == "sft" for pm in plan):
        ctx.upstream("conversations")
        conv_dir = ctx.stage_dir("conversations")
    return Setup(tok, extension, docs, known, conv_dir)


def packed_rows(pm: PlannedModel, s: Setup, cfg: TrainConfig, seed: int, world: int,
                cache: PlanCache | None = None) -> PackedMixture:
    """The model's whole plan of rows: documents (or conversations) of its languages, packed."""
    total = model_steps(pm, cfg, world) * cfg.grad_accum * world * cfg.batch_size
    docs = sft.chat_docs(s.conv_dir, pm) if pm.kind == "sft" and s.conv_dir else s.docs
    return PackedMixture(docs, pm.mixture, cfg.seq_len + 1, seed, total, pad_id=s.tok.pad_token_id,
                         conversations=pm.kind == "sft", where=f"models.{pm.key} ({pm.name})", cache=cache,
                         within=cfg.attention_within_documents)


def batch_source(rows: PackedMixture, cfg: TrainConfig, rank: int, world: int) -> Callable[[int, int], Batch]:
    """`get_batch(step, micro)`: rows of the plan, a pure function of (step, micro, rank), so a resumed
    run sees exactly the rows the interrupted one would have. Every model kind is fed this way;
    what differs (conversations: assistant-only labels, per-conversation positions) is in the rows."""

    def get_batch(step: int, micro: int) -> Batch:
        start = ((step * cfg.grad_accum + micro) * world + rank) * cfg.batch_size
        return rows.batch(range(start, start + cfg.batch_size))

    return get_batch


def warn_repeats(ctx: Context, pm: PlannedModel, usage: dict[str, dict[str, float]]) -> None:
    """Say what the plan does to the data that the user may not expect: heavy repetition, and
    conversations left out for being longer than a row."""
    for lang, u in usage.items():
        if u["tokens"] > REPEAT_LIMIT * u["tokens_per_epoch"]:
            ctx.warn(f"{pm.name} repeats {lang} {_above(u['tokens'] / u['tokens_per_epoch'], REPEAT_LIMIT)} times "
                     f"({u['tokens']:,} tokens from {u['tokens_per_epoch']:,}); beyond ~{REPEAT_LIMIT:.0f} epochs "
                     "repeated data adds little (Muennighoff et al. 2023)")
        if u.get("left_out_too_long"):
            ctx.warn(f"{pm.name} leaves out {u['left_out_too_long']:,} {lang} conversations longer than a row "
                     "(train.seq_len + 1 tokens); raise seq_len to keep them")


def _above(x: float, limit: float) -> str:
    """x, printed short but never as the limit it exceeds (4.000001024, not 4)."""
    return short if float(short := f"{x:.5g}") > limit else repr(x)


def warn_warmup(ctx: Context, pm: PlannedModel, steps: int, optim: OptimConfig) -> None:
    """Say when the warm-up is shortened (`OptimConfig.warmup_for`): the recipe asked for another."""
    if (warmup := optim.warmup_for(steps)) != optim.warmup_steps:
        room = "reach its learning rate" if optim.schedule == "constant" else "decay"
        ctx.warn(f"{pm.name}: a warm-up of {optim.warmup_steps} steps leaves its {steps} steps no room to {room}: "
                 f"it warms up over {warmup}")


def _progress(ctx: Context) -> Progress:
    return Progress(
        TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn(), TextColumn("run left {task.fields[run]}"),
        console=ctx.console, disable=ctx.quiet or not ctx.dist.is_main, transient=True,
    )


class RunClock:
    """Time left for every model still to train, from the mean step time so far (steps of all models
    of a run cost about the same: one sequence length, one batch size)."""

    def __init__(self, total_steps: int):
        self.total, self.done, self.t0 = total_steps, 0, time.perf_counter()

    def skip(self, steps: int) -> None:
        """Steps a resumed model does not run again: out of the total, never timed."""
        self.total -= steps

    def tick(self) -> str:
        self.done += 1
        return hms((self.total - self.done) * (time.perf_counter() - self.t0) / self.done)


def _save_final(model: torch.nn.Module, tok: Any, folder: Path, history: list[dict[str, Any]], dist: DistInfo,
                after: Callable[[Path], None] | None = None) -> None:
    """Gather the whole model (a collective under FSDP2) and let rank 0 write the HF folder
    (`after(tmp)` adds files, e.g. sample answers, before the folder takes its final name)."""
    # one process saves its model as it is (a tied head once: a state dict gathered off a GPU holds it twice)
    full = checkpoint.full_state_dict(model) if dist.world_size > 1 else None
    model.config.use_cache = True  # the saved model generates with a cache
    if dist.is_main:
        if full is not None:  # save through a clean, unwrapped instance of the same class
            clean = meta_model(model.config)
            clean.load_state_dict(full, assign=True)
            clean.tie_weights()
            clean.generation_config = model.generation_config
            model = clean
        with artifacts.staged_dir(folder) as tmp:
            model.save_pretrained(str(tmp), safe_serialization=True)
            tok.save_pretrained(str(tmp))
            artifacts.write_json_atomic(tmp / "train_log.json", history)
            if after is not None:
                after(tmp)
    barrier()


def _build(ctx: Context, pm: PlannedModel, s: Setup, saved: Path | None) -> tuple[torch.nn.Module, Any]:
    """The model to train, wrapped for scale, and the tokenizer it is saved with (the chat tokenizer for sft).
    `saved`: the checkpoint a resume starts from (`checkpoint.structure`): the model is built empty from it."""
    r, dist = ctx.recipe, ctx.dist
    tok = sft.chat_tokenizer(s.conv_dir, pm) if pm.kind == "sft" and s.conv_dir is not None else s.tok
    if saved is not None:
        return empty_model(saved, r.train, dist), tok

    def build() -> torch.nn.Module:
        model = build_model(pm.init, r.train.architecture, s.tok, r.seed, ctx.stage_dir("train"), s.known, s.streams,
                            extension=s.extension, embedding_init=pm.embedding_init)
        if tok is not s.tok:
            sft.add_chat_rows(model, s.tok, tok)
            sft.set_chat_generation(model, tok)
        return model

    if dist.world_size > 1:  # only rank 0 reads the whole model; every rank gets its shards
        return load_sharded(build, r.train, dist), tok
    model = build().to(dist.device)
    model.config.use_cache = False  # a KV cache is useless in training and makes compile recompile per layer
    return parallelize(model, r.train, dist), tok


def _flops(model: torch.nn.Module, seq_len: int) -> float | None:
    """FLOPs per token for MFU, or None (no MFU) for a model `plan` cannot read (another layout, remote code)."""
    try:
        return flops_per_token(model.config, seq_len)
    except (UserError, ValueError, AttributeError):
        return None


def _hooks(ctx: Context, pm: PlannedModel, s: Setup, ckpt_dir: Path, stop: monitor.GracefulStop,
           on_resume: Callable[[int], None]) -> tuple[Hooks, monitor.TrainLog]:
    """The loop's hooks; the log learns its resume step from the loop (`on_resume`), once the loop has
    decided it (a damaged `latest` resumes from `previous`, a stale checkpoint from nothing)."""
    cfg = ctx.recipe.train
    log = monitor.TrainLog(ckpt_dir, 0, cfg.tensorboard, enabled=ctx.dist.is_main)

    def resumed(step: int) -> None:
        log.start = step
        on_resume(step)

    validate = None
    if cfg.val_every:
        short = lambda msg: ctx.warn(f"{pm.name}: {msg}")  # noqa: E731  # a language validation leaves out
        if pm.kind == "sft" and s.conv_dir is not None:  # an instruct model: its own held-out conversations
            rows = monitor.conversation_rows(sft.chat_docs(s.conv_dir, pm, "heldout"), cfg.seq_len + 1, cfg.val_tokens, short)
        else:  # every language's held-out text: what continued training does to each
            rows = monitor.text_rows({lang: open_token_docs(ctx.stage_dir("tokens") / lang / "heldout")[0] for lang in s.docs
                                      if (ctx.stage_dir("tokens") / lang / "heldout").is_dir()},
                                     cfg.seq_len + 1, cfg.val_tokens, short)
        validate = monitor.validation(rows, cfg.batch_size)
    return Hooks(on_log=log, validate=validate, should_stop=stop.should_stop, stop_reason=stop.reason,
                 on_resume=resumed), log


def stop_requested(stop: monitor.GracefulStop, dist: DistInfo) -> bool:
    """Whether a signal asked the stage to stop, agreed by every rank (one seeing it first must not leave
    the others waiting in a collective)."""
    return any_rank(stop.should_stop(), dist.device)


def _keep_logs(ckpt_dir: Path, then: Callable[[Path], None] | None) -> Callable[[Path], None]:
    """Copy train_log.jsonl and the TensorBoard events into the model folder before it is final."""
    def after(tmp: Path) -> None:
        if (ckpt_dir / monitor.LOG_FILE).is_file():
            shutil.copy2(ckpt_dir / monitor.LOG_FILE, tmp / monitor.LOG_FILE)
        if (ckpt_dir / monitor.TB_DIR).is_dir():
            shutil.copytree(ckpt_dir / monitor.TB_DIR, tmp / monitor.TB_DIR)
        if then is not None:
            then(tmp)
    return after


def work_dirs(models_dir: Path, name: str) -> tuple[Path, Path]:
    """A model's checkpoints and packing plan while it trains."""
    return models_dir / f".{name}.ckpt", models_dir / f".{name}.plan"


def run_fingerprint(fp: str, cfg: TrainConfig, steps: int) -> str:
    """What a model's checkpoints are of: its fingerprint, and its warm-up where that moved (`warmup_moved`): on
    another number of ranks a token budget's steps differ, which the fingerprint (one rank's steps) cannot tell."""
    return artifacts.fingerprint(fp, cfg.optim.warmup_for(steps)) if cfg.optim.warmup_moved(steps) else fp


def discard_work(ctx: Context, name: str, fingerprint: str | None = None) -> None:
    """Remove a model's checkpoints and plan (rank 0): spent once its folder has its manifest, or when it is
    forced to start over. A finished model's are removed again on the next run (a kill in the middle), then
    (`fingerprint`: its `run_fingerprint`) only its own: another configuration's are kept for `resume_point`."""
    if not ctx.dist.is_main:
        return
    ckpt_dir, plan_dir = work_dirs(ctx.stage_dir("train"), name)
    shutil.rmtree(plan_dir, ignore_errors=True)  # a pure function of the run's inputs: planned anew if needed
    if fingerprint is None or checkpoint.fingerprints(ckpt_dir) <= {fingerprint}:
        shutil.rmtree(ckpt_dir, ignore_errors=True)


def train_one(ctx: Context, pm: PlannedModel, fp: str, s: Setup, clock: RunClock | None = None,
              stop: monitor.GracefulStop | None = None) -> dict[str, Any]:
    """Train one model and save its folder; `stop`: the stage's signal flag (none: signals are not watched)."""
    r, cfg, dist = ctx.recipe, ctx.recipe.train, ctx.dist
    stop = stop or monitor.GracefulStop()
    models_dir = ctx.stage_dir("train")
    ckpt_dir, plan_dir = work_dirs(models_dir, pm.name)
    if ctx.is_forced("train"):
        discard_work(ctx, pm.name)  # forced: start over, not from a resume point
    barrier()
    steps = model_steps(pm, cfg, dist.world_size)
    warn_warmup(ctx, pm, steps, cfg.optim)
    run_fp = run_fingerprint(fp, cfg, steps)
    # the packing plan is planned once and memory-mapped by every rank (and by a resumed run)
    rows = packed_rows(pm, s, cfg, r.seed, dist.world_size, PlanCache(plan_dir))
    usage = rows.usage()
    warn_repeats(ctx, pm, usage)
    try:  # decided before the build: a resume needs no init weights; a checkpoint set aside is said even with -q
        resume = resume_point(ckpt_dir, run_fp, dist.rank, dist.world_size, lambda msg: ctx.warn(f"{pm.name}: {msg}"))
    except UserError as e:
        raise UserError(f"models.{pm.key} ({pm.name}): {e}") from None
    model, tok = _build(ctx, pm, s, checkpoint.structure(ckpt_dir) if resume.state is not None else None)
    spec = LoopSpec(steps=steps, lr=pm.lr, optim=cfg.optim, grad_accum=cfg.grad_accum, precision=cfg.precision,
                    save_every=cfg.save_every, log_every=cfg.log_every, fingerprint=run_fp, groups=tuple(rows.langs),
                    flops_per_token=_flops(model, cfg.seq_len), peak_flops=monitor.peak_flops(dist.device, cfg.precision),
                    val_every=cfg.val_every, chunked_loss=cfg.chunked_loss)
    clock = clock or RunClock(steps)
    if stop_requested(stop, dist):  # the signal came while the model was built: nothing of it is written yet
        reason, code = stop.reason()
        raise Stopped(f"{pm.name}: {reason} before training; run the same command again to resume", code)
    resumed_at: list[int] = []

    def on_resume(step: int) -> None:
        resumed_at.append(step)
        clock.skip(step)

    t0 = time.perf_counter()
    with _progress(ctx) as progress:
        task = progress.add_task(pm.name, total=steps, loss=float("nan"), run="?")
        hooks, log = _hooks(ctx, pm, s, ckpt_dir, stop, on_resume)
        try:
            history = train(model, batch_source(rows, cfg, dist.rank, dist.world_size), spec, ckpt_dir, rank=dist.rank,
                            on_step=lambda step, loss: progress.update(task, completed=step + 1, loss=loss, run=clock.tick()),
                            log=lambda msg: ctx.log(f"  {pm.name}: {msg}"), hooks=hooks, resume=resume)
        except UserError as e:
            raise UserError(f"models.{pm.key} ({pm.name}): {e}") from None
        except Stopped as e:
            raise Stopped(f"{pm.name}: {e}", e.code) from None
        finally:
            log.close()
    samples = (lambda tmp: sft.write_samples(tmp, s.conv_dir, pm)) if pm.kind == "sft" and s.conv_dir else None
    _save_final(model, tok, models_dir / pm.name, history, dist, after=_keep_logs(ckpt_dir, samples))
    final_loss = history[-1]["loss"] if history else None
    fields = {"init": pm.init, "mixture": pm.mixture, "steps": steps, "warmup_steps": cfg.optim.warmup_for(steps),
              "final_loss": final_loss,
              "world_size": dist.world_size, "device": dist.hardware(),
              # wall-clock of the process that finished the model (a resumed one: since its resume step)
              "seconds": round(time.perf_counter() - t0, 1), "resumed_from_step": resumed_at[0] if resumed_at else 0, "tokens_seen": steps * cfg.grad_accum * cfg.batch_size * cfg.seq_len * dist.world_size,
              "per_language": usage}
    barrier()  # every rank is done reading the plan
    if dist.is_main:  # the model is whole before its checkpoints go: a kill in between loses no training
        artifacts.write_manifest(models_dir / pm.name, fp, **fields)
    discard_work(ctx, pm.name)
    barrier()
    return {"fingerprint": fp, **fields}
