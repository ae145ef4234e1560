"""The merge stage: each `merge.<name>` entry is one dense model, `merge/<name>/` (HF folder).

Experts are models of this run (the train stage's records) or HF folders; every entry is checked
(one architecture, one tokenizer) before any weights are written, and each model is cached on
its own like the train stage's. The manifest lists the merged models (kind "merge") in the model
registry, so eval scores them beside the rest. torch is imported only when a model is merged.
"""

from __future__ import annotations

from typing import Any

from occiforge import artifacts
from occiforge.context import Context, ModelRecord, Stage
from occiforge.experts.common import Source, common_init, default_base, resolve
from occiforge.recipe import MergeEntry

NAME = "merge"
TIES_DENSITY = 0.2  # the TIES paper's default: keep the top 20% of each delta


def _inputs(ctx: Context, name: str, entry: MergeEntry) -> tuple[list[Source], Source | None]:
    what = f"merge {name!r}"
    experts = resolve(ctx, NAME, what, entry.experts)
    base = None if entry.method == "linear" else default_base(ctx, NAME, what, entry.base, experts)
    return experts, base


def _density(entry: MergeEntry) -> float:
    return entry.density if entry.density is not None else TIES_DENSITY if entry.method == "ties" else 1.0


def model_fingerprint(entry: MergeEntry, experts: list[Source], base: Source | None) -> str:
    cfg = entry.model_dump(mode="json", exclude={"experts", "base"})
    return artifacts.fingerprint("merge-model/1", cfg, _density(entry), [e.fingerprint for e in experts], base and base.fingerprint)


def fingerprint(ctx: Context) -> str:
    fps = {name: model_fingerprint(entry, *_inputs(ctx, name, entry)) for name, entry in ctx.recipe.merge.items()}
    return artifacts.fingerprint("merge/1", fps)


def run(ctx: Context, fp: str) -> dict[str, Any]:
    from occiforge.experts.merge import merge_folders
    from occiforge.experts.tensors import check_experts

    plans = {name: _inputs(ctx, name, entry) for name, entry in ctx.recipe.merge.items()}
    for name, (experts, base) in plans.items():  # every entry checked before any weights are written
        check_experts(f"merge {name!r}", {s.name: s.path for s in [*experts, *([base] if base else [])]})
    models = []
    for name, entry in ctx.recipe.merge.items():
        experts, base = plans[name]
        folder, mfp = ctx.stage_dir(NAME) / name, model_fingerprint(entry, experts, base)
        if ctx.is_forced(NAME) or not artifacts.is_complete(folder, mfp):
            with ctx.status(f"merge: {name}"), artifacts.staged_dir(folder) as tmp:
                info = merge_folders(entry.method, [e.path for e in experts], tmp, base.path if base else None, entry.weights,
                                     _density(entry), entry.scale, entry.normalize)
            artifacts.write_manifest(folder, mfp, method=entry.method, experts=entry.experts, base=base and base.name, **info)
            ctx.log(f"  {name}: {entry.method} of {', '.join(entry.experts)}")
        rec = ModelRecord(name=name, folder=f"{ctx.stages[NAME].folder}/{name}", kind="merge", stage=NAME, fingerprint=mfp,
                          init=base.name if base else common_init(experts), method=entry.method, experts=entry.experts)
        models.append(rec.model_dump(mode="json"))
    return {"models": models}


STAGE = Stage(name=NAME, folder="merge", reads=(), fingerprint=fingerprint, run=run, produces_models=True,
              enabled=lambda r: bool(r.merge), enabled_by="merge")
