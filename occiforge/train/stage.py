"""The train stage: every planned model in order, each resumable and cached on its own.

`models/<name>/` is a HF checkpoint (safetensors + tokenizer) with its own manifest; an
interrupted model resumes from `models/.<name>.ckpt/`. Changing one model's config retrains
it and the models initialised from it, nothing else.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from occiforge import artifacts
from occiforge.recipe import PlannedModel
from occiforge.tokenizer.stage import load_tokenizer
from occiforge.train import checkpoint
from occiforge.train.distributed import DistInfo, barrier
from occiforge.train.loop import LoopSpec, train
from occiforge.train.parallel import parallelize
from occiforge.train.model import build_model, preflight_vocab
from occiforge.train.sampler import MixtureSampler
from occiforge.train.tokens import open_tokens

_NOT_HASHED = {"save_every", "log_every", "threads", "compile", "activation_checkpointing"}  # weights stay the same


def model_fingerprints(ctx: Any) -> dict[str, str]:
    r = ctx.recipe
    hyper = r.train.model_dump(mode="json", exclude=_NOT_HASHED)
    fps: dict[str, str] = {}
    for pm in r.plan():
        init = fps.get(pm.init, pm.init)
        fps[pm.name] = artifacts.fingerprint("model/1", hyper, pm.model_dump(mode="json"), r.seed, ctx.fingerprint("tokens"), init)
    return fps


def fingerprint(ctx: Any) -> str:
    return artifacts.fingerprint("train/1", model_fingerprints(ctx))


def _progress(ctx: Any) -> Progress:
    return Progress(
        TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn(),
        console=ctx.console, disable=ctx.quiet or not ctx.dist.is_main, transient=True,
    )


def _save_final(model: torch.nn.Module, tok: Any, folder: Path, history: list[dict[str, Any]], dist: DistInfo) -> None:
    """Gather the whole model (a collective under FSDP2) and let rank 0 write the HF folder."""
    full = checkpoint.full_state_dict(model)
    model.config.use_cache = True  # the saved model generates with a cache
    if dist.is_main:
        if dist.world_size > 1:  # save through a clean, unwrapped instance of the same class
            with torch.device("meta"):
                clean = AutoModelForCausalLM.from_config(model.config)
            clean.load_state_dict(full, assign=True)
            clean.tie_weights()
            model = clean
        with artifacts.staged_dir(folder) as tmp:
            model.save_pretrained(str(tmp), state_dict=full if dist.world_size == 1 else None, safe_serialization=True)
            tok.save_pretrained(str(tmp))
            artifacts.write_json_atomic(tmp / "train_log.json", history)
    barrier()


def train_one(ctx: Any, pm: PlannedModel, fp: str, tok: Any, streams: dict[str, Any]) -> dict[str, Any]:
    r, cfg, dist = ctx.recipe, ctx.recipe.train, ctx.dist
    models_dir = ctx.stage_dir("train")
    known = {p.name for p in r.plan()}
    model = build_model(pm.init, cfg.architecture, tok, r.seed, models_dir, known, streams).to(dist.device)
    model.config.use_cache = False  # a KV cache is useless in training and makes compile recompile per layer
    model = parallelize(model, cfg, dist)
    sampler = MixtureSampler(streams, pm.mixture, cfg.seq_len, seed=r.seed)

    def get_batch(step: int, micro: int) -> dict[str, torch.Tensor]:
        ids, _ = sampler.batch(step * cfg.grad_accum + micro, cfg.batch_size, rank=dist.rank)
        return {"input_ids": ids, "labels": ids}

    spec = LoopSpec(steps=pm.steps, lr=pm.lr, optim=cfg.optim, grad_accum=cfg.grad_accum, precision=cfg.precision,
                    save_every=cfg.save_every, log_every=cfg.log_every, fingerprint=fp)
    ckpt_dir = models_dir / f".{pm.name}.ckpt"
    with _progress(ctx) as progress:
        task = progress.add_task(pm.name, total=pm.steps, loss=float("nan"))
        history = train(model, get_batch, spec, ckpt_dir, rank=dist.rank,
                        on_step=lambda step, loss: progress.update(task, completed=step + 1, loss=loss),
                        log=lambda msg: ctx.log(f"  {pm.name}: {msg}"))
    _save_final(model, tok, models_dir / pm.name, history, dist)
    final_loss = history[-1]["loss"] if history else None
    fields = {"init": pm.init, "mixture": pm.mixture, "steps": pm.steps, "final_loss": final_loss,
              "world_size": dist.world_size, "tokens_seen": pm.steps * cfg.grad_accum * cfg.batch_size * cfg.seq_len * dist.world_size}
    if dist.is_main:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        artifacts.write_manifest(models_dir / pm.name, fp, **fields)
    barrier()
    return {"fingerprint": fp, **fields}


def run(ctx: Any, fp: str) -> dict[str, Any]:
    r = ctx.recipe
    ctx.upstream("tokens")
    if r.train.threads:
        torch.set_num_threads(r.train.threads)
    tok = load_tokenizer(str(ctx.stage_dir("tokenizer")))
    preflight_vocab([pm.init for pm in r.plan()], tok, known={pm.name for pm in r.plan()})  # before any training
    tokens_dir = ctx.stage_dir("tokens")
    streams = {lang: open_tokens(tokens_dir, lang) for lang in r.languages}
    out: dict[str, Any] = {}
    for pm, (name, mfp) in zip(r.plan(), model_fingerprints(ctx).items()):
        folder = ctx.stage_dir("train") / name
        if artifacts.is_complete(folder, mfp):
            ctx.log(f"  [dim]{name}: up to date[/dim]")
            out[name] = artifacts.read_manifest(folder) or {}
            continue
        out[name] = train_one(ctx, pm, mfp, tok, streams)
        ctx.log(f"  {name}: {pm.steps} steps on {pm.mixture}, final loss {out[name]['final_loss']:.3f}")
    keys = ("fingerprint", "init", "mixture", "steps", "final_loss")
    return {"models": {name: {k: m.get(k) for k in keys} for name, m in out.items()}}


def model_dirs(ctx: Any) -> dict[str, Path]:
    return {pm.name: ctx.stage_dir("train") / pm.name for pm in ctx.recipe.plan()}
