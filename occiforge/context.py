"""What a stage declares (`Stage`) and what it is given (`Context`), with the model registry.

A stage is one module with one `STAGE = Stage(...)`; `occiforge/registry.py` lists the
modules in run order and the runner iterates them, knowing no stage by name. Stages never
import each other: they meet through artifacts (each stage folder and its manifest), this
context and the model registry, where every stage that produces models lists them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from rich.console import Console

from occiforge import artifacts
from occiforge.dist import DistInfo
from occiforge.errors import UserError
from occiforge.recipe import Recipe, RecordKind


def hms(seconds: float) -> str:
    """`h:mm:ss`, for elapsed and remaining times in the terminal."""
    return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"


@dataclass(frozen=True)
class Stage:
    """A stage of the run: its folder, what it reads, and how it fingerprints and runs."""

    name: str
    folder: str  # under the run directory
    reads: tuple[str, ...]  # stages whose artifacts it needs (each runs earlier)
    fingerprint: Callable[[Context], str]  # its config and its inputs' fingerprints
    run: Callable[[Context, str], dict[str, Any]]  # does the work; returns the manifest fields
    collective: bool = False  # every torchrun rank runs it (training); others run on rank 0 only
    produces_models: bool = False  # its manifest lists models under "models" (the model registry)
    uses_models: bool = False  # reads the model registry: runs after every enabled producer
    enabled: Callable[[Recipe], bool] = lambda recipe: True
    enabled_by: str = ""  # the recipe keys that switch it on, for error messages
    preflight: Callable[[Context], None] | None = None  # cheap input checks before any stage runs


class ModelRecord(BaseModel):
    """One model in the registry, as its producing stage listed it in its manifest."""

    model_config = ConfigDict(extra="allow")

    name: str
    folder: str  # relative to the run directory
    kind: RecordKind | Literal["external"]
    stage: str
    fingerprint: str
    init: str | None = None
    target: str | None = None
    replay: float | None = None
    replay_language: str | None = None
    mixture: dict[str, float] | None = None
    steps: int | None = None
    tokens_seen: int | None = None


@dataclass
class Context:
    """Everything a stage is given: the recipe, the run directory, logging, ranks, forced stages, models."""

    recipe: Recipe
    stages: dict[str, Stage]
    quiet: bool = False
    console: Console = field(default_factory=lambda: Console(stderr=True))
    dist: DistInfo = field(default_factory=DistInfo.single)
    forced: frozenset[str] = frozenset()
    _fps: dict[str, str] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.recipe.run_path

    def stage_dir(self, stage: str) -> Path:
        return self.run_dir / self.stages[stage].folder

    def is_forced(self, stage: str) -> bool:
        """--force STAGE: the stage redoes its per-item work too (models, scores), not only its manifest."""
        return stage in self.forced

    def fingerprint(self, stage: str) -> str:
        """The fingerprint a stage's manifest must carry; upstream stages' fingerprints feed it."""
        if stage not in self._fps:
            self._fps[stage] = self.stages[stage].fingerprint(self)
        return self._fps[stage]

    def is_current(self, folder: Path, fp: str, what: str) -> bool:
        """Whether `folder` holds finished work of this fingerprint; an artifact changed on disk
        since it was written is said in one line (even with -q: someone touched the run) and redone."""
        stale = artifacts.staleness(folder, fp)
        if stale is not None and stale.tampered and self.dist.is_main:
            self.console.print(f"occiforge: {what}: {stale.reason}; redoing it", highlight=False, soft_wrap=True)
        return stale is None

    def upstream(self, stage: str) -> dict[str, Any]:
        """The manifest of a finished upstream stage; an error if it is missing or stale."""
        folder = self.stage_dir(stage)
        if not artifacts.is_complete(folder, self.fingerprint(stage)):
            raise UserError(f"stage '{stage}' has no up-to-date output in {folder}; run `occiforge {stage}` first")
        return artifacts.read_manifest(folder) or {}

    def models(self, before: str | None = None) -> dict[str, ModelRecord]:
        """The model registry: every model the enabled model-producing stages published, in order;
        with `before`, only those of the producers that run before that stage (a producer that
        builds on other models, as merge and moe do, reads the registry this way)."""
        out: dict[str, ModelRecord] = {}
        for name, stage in self.stages.items():
            if name == before:
                break
            if stage.produces_models and stage.enabled(self.recipe):
                for row in self.upstream(name).get("models", []):
                    out[row["name"]] = ModelRecord.model_validate(row)
        return out

    def model_path(self, record: ModelRecord) -> Path:
        return self.run_dir / record.folder

    def status(self, msg: str) -> contextlib.AbstractContextManager[Any]:
        """A spinner for work without a known length (nothing in quiet mode)."""
        quiet = self.quiet or not self.dist.is_main
        return contextlib.nullcontext() if quiet else self.console.status(msg, spinner="dots")

    def log(self, msg: str) -> None:
        if not self.quiet and self.dist.is_main:
            self.console.print(msg)

    def warn(self, msg: str) -> None:
        """A warning on rank 0, printed even with -q."""
        if self.dist.is_main:
            self.console.print(f"occiforge: warning: {msg}", highlight=False, soft_wrap=True)
