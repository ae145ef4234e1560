"""The train stage: every planned model in order, each resumable and cached on its own.

`models/<name>/` is a HF checkpoint (safetensors + tokenizer) with its own manifest; an
interrupted model resumes from `models/.<name>.ckpt/`. Changing one model's config retrains
it and the models initialised from it, nothing else; `--force train` retrains them all. The
stage manifest lists every model it made (`models`): that list is the model registry later
stages read through `Context.models()`. torch is imported only when a model is trained.
"""

from __future__ import annotations

from typing import Any

from occiforge import artifacts
from occiforge.context import Context, ModelRecord, Stage
from occiforge.lm import check_available
from occiforge.recipe import PlannedModel, Recipe
from occiforge.train.plan import model_steps

# settings that change speed, bookkeeping or monitoring, never the weights
_NOT_HASHED = {"save_every", "log_every", "threads", "compile", "chunked_loss", "activation_checkpointing",
               "val_every", "val_tokens", "tensorboard", "dist_timeout_minutes"}


def _extends_vocab(r: Recipe, pm: PlannedModel, known: set[str]) -> bool:
    """Whether the model's embeddings grow here: an external init under an extended tokenizer."""
    return r.tokenizer.extend is not None and pm.init != "scratch" and pm.init not in known


def model_fingerprints(ctx: Context) -> dict[str, str]:
    """Per model: its config, the run's hyper-parameters, the token shards and its init's fingerprint."""
    r = ctx.recipe
    # an option added later is hashed only when set: runs from before it keep their fingerprints (and checkpoints)
    unset = {"attention_within_documents"} if not r.train.attention_within_documents else set()
    hyper = r.train.model_dump(mode="json", exclude=_NOT_HASHED | unset)
    known = {pm.name for pm in r.plan()}
    fps: dict[str, str] = {}
    for pm in r.plan():
        spec = pm.model_dump(mode="json", include={"init", "mixture", "steps", "tokens", "lr", "chat", "chat_template"})
        # the fingerprint sorts keys, but the order of the mixture's languages sets the data order (each
        # language's shuffle seed, the per-row draw): it is hashed as the ordered list it is
        spec["mixture_order"] = list(pm.mixture or {})
        if _extends_vocab(r, pm, known):  # the only models whose weights the embedding init touches
            spec["embedding_init"] = pm.embedding_init
        steps = model_steps(pm, r.train, 1)  # one rank's count: a fingerprint does not depend on the world size
        if r.train.optim.warmup_moved(steps):
            spec["warmup"] = r.train.optim.warmup_for(steps)
        chats = ctx.fingerprint("conversations") if pm.kind == "sft" else None
        fps[pm.name] = artifacts.fingerprint("model/3", hyper, spec, r.seed, ctx.fingerprint("tokens"), chats,
                                             fps.get(pm.init, pm.init))
    return fps


def fingerprint(ctx: Context) -> str:
    return artifacts.fingerprint("train/3", model_fingerprints(ctx))


def record(ctx: Context, pm: PlannedModel, fp: str, done: dict[str, Any]) -> ModelRecord:
    """The model's entry in the registry; `per_language`: tokens and epochs of each language it read."""
    return ModelRecord(name=pm.name, folder=f"{ctx.stages['train'].folder}/{pm.name}", kind=pm.kind, stage="train",
                       fingerprint=fp, init=pm.init, target=pm.target, replay=pm.replay, replay_language=pm.replay_language,
                       mixture=pm.mixture, steps=done.get("steps", pm.steps), tokens_seen=done.get("tokens_seen"),
                       per_language=done.get("per_language"))


def run(ctx: Context, fp: str) -> dict[str, Any]:
    """Every model to train, in plan order. SIGTERM/SIGINT anywhere in the stage stop it at the next safe
    point: inside a model's training loop (a checkpoint), before a model trains, or after a model is saved."""
    from occiforge.train import monitor

    with monitor.GracefulStop() as stop:
        return _run(ctx, stop)


def _run(ctx: Context, stop: Any) -> dict[str, Any]:
    from occiforge.errors import Stopped
    from occiforge.train import trainer

    plan, fps = ctx.recipe.plan(), model_fingerprints(ctx)
    setup = trainer.setup(ctx, plan)
    models: list[dict[str, Any]] = []
    todo = [pm for pm in plan if ctx.is_forced("train")
            or not ctx.is_current(ctx.stage_dir("train") / pm.name, fps[pm.name], f"model {pm.name}")]
    clock = trainer.RunClock(sum(model_steps(pm, ctx.recipe.train, ctx.dist.world_size) for pm in todo))
    for pm in plan:
        folder = ctx.stage_dir("train") / pm.name
        if pm not in todo:
            ctx.log(f"  [dim]{pm.name}: up to date[/dim]")
            done = artifacts.read_manifest(folder) or {}
            steps = model_steps(pm, ctx.recipe.train, ctx.dist.world_size)  # what a kill after its manifest left:
            trainer.discard_work(ctx, pm.name, trainer.run_fingerprint(fps[pm.name], ctx.recipe.train, steps))
        else:
            done = trainer.train_one(ctx, pm, fps[pm.name], setup, clock, stop)
            epochs = ", ".join(f"{lang} {u['epochs']:.2f}" for lang, u in done["per_language"].items())
            ctx.log(f"  {pm.name}: {done['steps']} steps, epochs {epochs}, final loss {done['final_loss']:.3f}")
        models.append(record(ctx, pm, fps[pm.name], done).model_dump(mode="json"))
        if trainer.stop_requested(stop, ctx.dist):  # between models, or after the last: every saved one is whole
            reason, code = stop.reason()
            raise Stopped(f"{reason}: models up to {pm.name} are saved, the stage is not finished; "
                          "run the same command again to go on", code)
    aside = sorted(p.name for p in ctx.stage_dir("train").iterdir() if ".damaged-" in p.name or p.name.endswith(".stale"))
    if aside:  # said at every run until deleted: they can hold days of training, or a damaged file worth a look
        ctx.warn(f"checkpoints set aside by earlier runs are kept in {ctx.stage_dir('train')}: "
                 f"{', '.join(aside)} (delete them to free the space)")
    return {"models": models}


def preflight(ctx: Context) -> None:
    """An external `init` (HF folder or hub id) must be there before any stage runs."""
    known = {pm.name for pm in ctx.recipe.plan()}
    for pm in ctx.recipe.plan():
        if pm.init != "scratch" and pm.init not in known:
            check_available(pm.init, f"models.{pm.key}.init")


STAGE = Stage(name="train", folder="models", reads=("tokenizer", "tokens"), fingerprint=fingerprint, run=run,
              collective=True, produces_models=True, enabled=lambda r: bool(r.models), enabled_by="models",
              preflight=preflight)
