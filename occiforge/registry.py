"""The stage registry: the modules that declare a `STAGE`, in run order.

A new stage is one module with `STAGE = Stage(...)` (see `occiforge.context.Stage`) plus one
line here. Stage modules import only the core at module level, so loading the registry stays
cheap (`occiforge --help` and `validate` import no torch).
"""

from __future__ import annotations

import importlib

from occiforge.context import Stage

MODULES: tuple[str, ...] = (
    "occiforge.data.stage",
    "occiforge.tokenizer.stage",
    "occiforge.data.tokens",
    "occiforge.train.conversations",
    "occiforge.train.stage",
    "occiforge.experts.merge_stage",
    "occiforge.experts.moe_stage",
    "occiforge.eval.stage",
    "occiforge.experts.transfer_stage",
    "occiforge.report.stage",
    "occiforge.release.stage",
)


def stages() -> dict[str, Stage]:
    """Every registered stage by name, in run order."""
    out: dict[str, Stage] = {}
    for module in MODULES:
        stage: Stage = importlib.import_module(module).STAGE
        out[stage.name] = stage
    return out
