"""What the merge and moe stages share: resolving expert names to folders and fingerprints.

An expert is a model of this run (a record of an earlier producer in the model registry) or a
HF folder on disk. Only the core is imported here: the stage modules import this at module level.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from occiforge.context import Context, ModelRecord
from occiforge.errors import UserError
from occiforge.recipe import MoeEntry, OptimConfig, Recipe


@dataclass(frozen=True)
class Source:
    """One input model: its name as the recipe gives it, its folder, fingerprint and registry record."""

    name: str
    path: Path
    fingerprint: str
    record: ModelRecord | None = None


def resolve(ctx: Context, stage: str, what: str, names: list[str]) -> list[Source]:
    """Each name as a model of the registry (producers before `stage`) or an existing HF folder."""
    records = ctx.models(before=stage)
    out = []
    for name in names:
        if name in records:
            rec = records[name]
            out.append(Source(name, ctx.model_path(rec), rec.fingerprint, rec))
        elif (Path(name) / "config.json").is_file():
            out.append(Source(name, Path(name), f"external:{Path(name).resolve()}"))
        else:
            known = ", ".join(records) or "none"
            raise UserError(f"{what}: {name!r} is neither a model of this run (models: {known}) nor a HF model folder")
    return out


def common_init(experts: list[Source]) -> str | None:
    """The model every expert was initialised from, if they share one (a merge's or mixture's `init`)."""
    inits = {e.record.init if e.record else None for e in experts}
    return inits.pop() if len(inits) == 1 else None


def default_base(ctx: Context, stage: str, what: str, given: str | None, experts: list[Source]) -> Source:
    """The given base, or the model every expert was initialised from."""
    if given is None:
        given = common_init(experts)
        if given is None:
            raise UserError(f"{what}: the experts ({', '.join(e.name for e in experts)}) do not share one init; give 'base'")
    return resolve(ctx, stage, what, [given])[0]  # type: ignore[list-item]


def router_optim(r: Recipe, entry: MoeEntry) -> OptimConfig:
    """The brief training's schedule: the run's, with the router's warm-up."""
    return r.train.optim.model_copy(update={"warmup_steps": entry.router.warmup_steps})
