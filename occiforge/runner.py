"""The stage graph: run stages in order, skip those whose manifest matches, resume the rest.

Each stage module exposes `fingerprint(ctx) -> str` (a hash of its config and its inputs'
fingerprints) and `run(ctx, fp) -> dict` (does the work, returns the manifest fields). The
runner writes `manifest.json` last, so a stage folder without a matching manifest is simply
redone (or resumed, where the stage keeps its own progress, as training does).
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from occiforge import artifacts
from occiforge.errors import UserError
from occiforge.recipe import Recipe, dump_recipe
from occiforge.train.distributed import DistInfo, barrier

STAGES: tuple[str, ...] = ("data", "tokenizer", "tokens", "train", "eval", "report")
COLLECTIVE = {"train"}  # stages every torchrun rank runs together
# stage name -> (module with fingerprint/run, folder in the run directory)
_MODULES = {
    "data": ("occiforge.data.stage", "data"),
    "tokenizer": ("occiforge.tokenizer.stage", "tokenizer"),
    "tokens": ("occiforge.train.tokens", "tokens"),
    "train": ("occiforge.train.stage", "models"),
    "eval": ("occiforge.eval.stage", "eval"),
    "report": ("occiforge.report.stage", "report"),
}


@dataclass
class Context:
    recipe: Recipe
    quiet: bool = False
    console: Console = field(default_factory=lambda: Console(stderr=True))
    dist: DistInfo = field(default_factory=DistInfo.single)
    _fps: dict[str, str] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.recipe.run_path

    def stage_dir(self, stage: str) -> Path:
        return self.run_dir / _MODULES[stage][1]

    def fingerprint(self, stage: str) -> str:
        """The fingerprint a stage's manifest must carry; upstream stages' fingerprints feed it."""
        if stage not in self._fps:
            self._fps[stage] = _module(stage).fingerprint(self)
        return self._fps[stage]

    def upstream(self, stage: str) -> dict[str, Any]:
        """The manifest of a finished upstream stage; an error if it is missing or stale."""
        folder = self.stage_dir(stage)
        if not artifacts.is_complete(folder, self.fingerprint(stage)):
            raise UserError(f"stage '{stage}' has no up-to-date output in {folder}; run `occiforge {stage}` first")
        return artifacts.read_manifest(folder) or {}

    def status(self, msg: str) -> contextlib.AbstractContextManager[Any]:
        """A spinner for work without a known length (nothing in quiet mode)."""
        quiet = self.quiet or not self.dist.is_main
        return contextlib.nullcontext() if quiet else self.console.status(msg, spinner="dots")

    def log(self, msg: str) -> None:
        if not self.quiet and self.dist.is_main:
            self.console.print(msg)


def _module(stage: str) -> Any:
    return importlib.import_module(_MODULES[stage][0])


def select(start: str | None, stop: str | None) -> list[str]:
    for name in (start, stop):
        if name is not None and name not in STAGES:
            raise UserError(f"unknown stage {name!r} (stages: {', '.join(STAGES)})")
    lo = STAGES.index(start) if start else 0
    hi = STAGES.index(stop) if stop else len(STAGES) - 1
    return list(STAGES[lo : hi + 1])


def preflight(ctx: Context) -> None:
    """Checks that need no work: inputs exist. Runs before any stage starts."""
    from occiforge.data.readers import check_source

    for src in ctx.recipe.data.sources:
        check_source(src, src.languages or ctx.recipe.languages)
    pretrained = ctx.recipe.tokenizer.pretrained
    if pretrained and (pretrained.startswith((".", "/")) or Path(pretrained).suffix == ".json"):
        if not Path(pretrained).exists():
            raise UserError(f"tokenizer.pretrained: not found: {pretrained}")


def run_stage(ctx: Context, stage: str, force: bool = False) -> dict[str, Any]:
    folder = ctx.stage_dir(stage)
    fp = ctx.fingerprint(stage)
    if not force and artifacts.is_complete(folder, fp):
        ctx.log(f"[dim]• {stage}: up to date ({folder})[/dim]")
        return artifacts.read_manifest(folder) or {}
    ctx.log(f"[bold]▶ {stage}[/bold]")
    t0 = time.perf_counter()
    # under torchrun only training is collective; rank 0 does every other stage alone
    if ctx.dist.is_main or stage in COLLECTIVE:
        fields = _module(stage).run(ctx, fp)
        fields["seconds"] = round(time.perf_counter() - t0, 2)
        if ctx.dist.is_main:
            artifacts.write_manifest(folder, fp, stage=stage, recipe=ctx.recipe.name, **fields)
            ctx.log(f"[green]✓ {stage}[/green] in {fields['seconds']:.1f}s → {folder}")
    barrier()
    return artifacts.read_manifest(folder) or {}


def run(ctx: Context, stages: Iterable[str], force: Iterable[str] = ()) -> None:
    stages = list(stages)
    force = set(force)
    for name in force:
        if name not in STAGES:
            raise UserError(f"--force: unknown stage {name!r} (stages: {', '.join(STAGES)})")
    preflight(ctx)
    if ctx.dist.is_main:
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        artifacts.write_text_atomic(ctx.run_dir / "recipe.resolved.yaml", dump_recipe(ctx.recipe))
    for stage in stages:
        if stage == "report" and not ctx.recipe.report.enabled:
            continue
        run_stage(ctx, stage, force=stage in force)
