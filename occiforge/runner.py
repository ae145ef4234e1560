"""The stage graph: run the registry's stages in order, skip those whose manifest matches, resume the rest.

Generic over `occiforge.registry`: each stage declares its folder, inputs, `fingerprint(ctx)`
and `run(ctx, fp)` (see `occiforge.context.Stage`). The runner writes `manifest.json` last, so
a stage folder without a matching manifest is simply redone (or resumed, where the stage keeps
its own progress, as training does).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

from occiforge import artifacts, lm, registry
from occiforge.context import Context, Stage, hms
from occiforge.dist import DistInfo, barrier, local
from occiforge.errors import UserError
from occiforge.recipe import Recipe, dump_recipe


def check_graph(stages: dict[str, Stage]) -> None:
    """Every stage reads only stages that run before it: the registry order is a topological order."""
    seen: set[str] = set()
    for name, stage in stages.items():
        if late := [r for r in stage.reads if r not in seen]:
            raise RuntimeError(f"stage registry: {name!r} reads {late}, which do not run before it")
        if stage.produces_models and stage.uses_models:
            raise RuntimeError(f"stage registry: {name!r} cannot both produce and use the model registry")
        seen.add(name)
    producers = [n for n, s in stages.items() if s.produces_models]
    for name, stage in stages.items():
        if stage.uses_models and any(list(stages).index(p) > list(stages).index(name) for p in producers):
            raise RuntimeError(f"stage registry: {name!r} uses models but a model producer runs after it")


def check_enabled(ctx: Context, selected: Iterable[str]) -> None:
    """A selected stage that is on must not read a stage the recipe switches off."""
    for name in selected:
        stage = ctx.stages[name]
        if not stage.enabled(ctx.recipe):
            continue
        for dep in stage.reads:
            if not ctx.stages[dep].enabled(ctx.recipe):
                raise UserError(f"stage '{name}' ({stage.enabled_by or 'always on'}) reads '{dep}', which this recipe "
                                f"switches off ({ctx.stages[dep].enabled_by})")


def select(stages: dict[str, Stage], start: str | None, stop: str | None) -> list[str]:
    names = list(stages)
    for name in (start, stop):
        if name is not None and name not in stages:
            raise UserError(f"unknown stage {name!r} (stages: {', '.join(names)})")
    lo = names.index(start) if start else 0
    hi = names.index(stop) if stop else len(names) - 1
    return names[lo : hi + 1]


def run_stage(ctx: Context, name: str, position: str = "") -> dict[str, Any]:
    stage, folder = ctx.stages[name], ctx.stage_dir(name)
    fp = ctx.fingerprint(name)
    if not ctx.is_forced(name) and ctx.is_current(folder, fp, name):
        ctx.log(f"[dim]• {name}: up to date ({folder})[/dim]")
        return artifacts.read_manifest(folder) or {}
    for dep in stage.reads:  # never over another stage's missing or stale output (it may have been run alone)
        ctx.upstream(dep)
    ctx.log(f"[bold]▶ {name}[/bold]{position}")
    t0 = time.perf_counter()
    # under torchrun only collective stages (training) run on every rank; rank 0 does the rest alone
    if ctx.dist.is_main or stage.collective:
        with contextlib.nullcontext() if stage.collective else local():  # rank 0 alone: no collective
            fields = stage.run(ctx, fp)
        fields["seconds"] = round(time.perf_counter() - t0, 2)
        if ctx.dist.is_main:
            artifacts.write_manifest(folder, fp, stage=name, recipe=ctx.recipe.name, **fields)
            ctx.log(f"[green]✓ {name}[/green] in {fields['seconds']:.1f}s → {folder}")
    barrier()
    return artifacts.read_manifest(folder) or {}


def run(ctx: Context, selected: Iterable[str]) -> None:
    """Run the selected stages in registry order; those the recipe switches off are skipped."""
    selected = [name for name in ctx.stages if name in set(selected)]
    if unknown := sorted(ctx.forced - set(ctx.stages)):
        raise UserError(f"--force: unknown stage {unknown[0]!r} (stages: {', '.join(ctx.stages)})")
    check_enabled(ctx, selected)
    if ctx.run_dir.exists() and not ctx.run_dir.is_dir():
        raise UserError(f"run_dir: {ctx.run_dir} exists and is not a folder")
    lm.trust(ctx.recipe.trust_remote_code)
    for spec in ctx.recipe.trust_remote_code:
        ctx.log(f"[yellow]trust_remote_code: {spec} may run its own code (the recipe says so)[/yellow]")
    for stage in ctx.stages.values():  # cheap input checks, before any work
        if stage.preflight is not None and stage.enabled(ctx.recipe):
            stage.preflight(ctx)
    if ctx.dist.is_main:
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
    todo = [name for name in selected if ctx.stages[name].enabled(ctx.recipe)]
    t0 = time.perf_counter()
    for i, name in enumerate(todo, 1):
        run_stage(ctx, name, f" [dim](stage {i}/{len(todo)}, run {hms(time.perf_counter() - t0)} so far)[/dim]")
    if ctx.dist.is_main:  # written once the stages it describes are done: a failed attempt leaves the last good one
        artifacts.write_text_atomic(ctx.run_dir / "recipe.resolved.yaml", dump_recipe(ctx.recipe))
        ctx.log(f"[bold green]✓ run[/bold green] {len(todo)} stages in {hms(time.perf_counter() - t0)} → {ctx.run_dir}")



def make_context(recipe: Recipe, quiet: bool = False, forced: Iterable[str] = (), dist: DistInfo | None = None) -> Context:
    """A context over the registered stages (the stage graph checked once here)."""
    stages = registry.stages()
    check_graph(stages)
    return Context(recipe=recipe, stages=stages, quiet=quiet, forced=frozenset(forced),
                   **({"dist": dist} if dist is not None else {}))
