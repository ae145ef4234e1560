"""Shared fixtures: tiny recipes on the built-in demo corpus, and the optional ../shared data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("OCCIFORGE_SHARED", REPO.parent / "shared"))


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or a skip (a failure when OCCIFORGE_REQUIRE_SHARED=1, as in CI)."""
    data = SHARED / "data"
    if not (data / "mono").is_dir():
        if os.environ.get("OCCIFORGE_REQUIRE_SHARED") == "1":
            pytest.fail(f"OCCIFORGE_REQUIRE_SHARED=1 but {data} is missing")
        pytest.skip(f"shared data not found at {data} (set OCCIFORGE_SHARED or clone with ../shared beside)")
    return data


def tiny_tree(run_dir: Path, langs: tuple[str, ...] = ("en", "de"), **over: Any) -> dict[str, Any]:
    """A recipe that runs every stage in seconds on the built-in demo corpus."""
    tree: dict[str, Any] = {
        "name": "tiny",
        "run_dir": str(run_dir),
        "languages": list(langs),
        "data": {"sources": [{"name": "demo", "path": "builtin:demo"}], "heldout_fraction": 0.2},
        "tokenizer": {"vocab_size": 600},
        "train": {
            "architecture": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64},
            "seq_len": 32, "batch_size": 4, "steps": 12, "save_every": 4, "log_every": 2, "threads": 1,
            "optim": {"warmup_steps": 2},
        },
        "models": {"base": {"mixture": {"en": 1.0}}, "cpt": {"init": "base", "targets": [lang for lang in langs if lang != "en"], "steps": 6}},
        "eval": {"max_docs_per_language": 3},
    }
    tree.update(over)
    return tree


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_tree(tmp_path / "run"), sort_keys=False))
    return path
