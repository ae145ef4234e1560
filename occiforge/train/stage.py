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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from occiforge import artifacts
from occiforge.recipe import PlannedModel
from occiforge.tokenizer.stage import load_tokenizer
from occiforge.train.loop import LoopSpec, train
from occiforge.train.model import build_model
from occiforge.train.sampler import MixtureSampler
from occiforge.train.tokens import open_tokens

_NOT_HASHED = {"save_every", "log_every", "threads"}  # do not change the weights


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
        console=ctx.console, disable=ctx.quiet, transient=True,
    )


def train_one(ctx: Any, pm: PlannedModel, fp: str, tok: Any, streams: dict[str, Any]) -> dict[str, Any]:
    r, cfg = ctx.recipe, ctx.recipe.train
    models_dir = ctx.stage_dir("train")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    known = {p.name for p in r.plan()}
    model = build_model(pm.init, cfg.architecture, tok, r.seed, models_dir, known).to(device)
    sampler = MixtureSampler(streams, pm.mixture, cfg.seq_len, seed=r.seed)

    def get_batch(step: int, micro: int) -> dict[str, torch.Tensor]:
        ids, _ = sampler.batch(step * cfg.grad_accum + micro, cfg.batch_size)
        return {"input_ids": ids, "labels": ids}

    spec = LoopSpec(steps=pm.steps, lr=pm.lr, optim=cfg.optim, grad_accum=cfg.grad_accum, precision=cfg.precision,
                    save_every=cfg.save_every, log_every=cfg.log_every, fingerprint=fp)
    run_model = torch.compile(model) if cfg.compile else model
    ckpt_dir = models_dir / f".{pm.name}.ckpt"
    with _progress(ctx) as progress:
        task = progress.add_task(pm.name, total=pm.steps, loss=float("nan"))
        history = train(run_model, get_batch, spec, ckpt_dir,
                        on_step=lambda step, loss: progress.update(task, completed=step + 1, loss=loss),
                        log=lambda msg: ctx.log(f"  {pm.name}: {msg}"))
    with artifacts.staged_dir(models_dir / pm.name) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        artifacts.write_json_atomic(tmp / "train_log.json", history)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    final_loss = history[-1]["loss"] if history else None
    fields = {"init": pm.init, "mixture": pm.mixture, "steps": pm.steps, "final_loss": final_loss}
    return artifacts.write_manifest(models_dir / pm.name, fp, **fields)


def run(ctx: Any, fp: str) -> dict[str, Any]:
    r = ctx.recipe
    ctx.upstream("tokens")
    if r.train.threads:
        torch.set_num_threads(r.train.threads)
    tok = load_tokenizer(str(ctx.stage_dir("tokenizer")))
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
