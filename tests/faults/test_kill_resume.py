"""Fault injection: SIGKILL at seeded random points of a run, rerun, and the artifacts are the same
as an uninterrupted run's (data shards, token streams, model weights, scores), bit for bit. The
run pre-trains, continues bilingually and instruction-tunes (SFT), so kills land in each."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, tiny_tree

TRIALS = 3


def _recipe(tmp: Path, name: str) -> Path:
    tree = tiny_tree(tmp / name)
    tree["train"].update(steps=40, save_every=10, seq_len=96)  # conversations need rows longer than 32
    tree["train"]["architecture"]["max_position_embeddings"] = 128
    tree["models"] = {"base": {"mixture": {"en": 1.0}}, "cpt": {"init": "base", "targets": ["de"], "steps": 20},
                      "instruct": {"kind": "sft", "init": "base", "data": [{"path": "builtin:demo", "languages": ["en", "de"]}],
                                   "steps": 10}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def _run(recipe: Path) -> subprocess.Popen:
    # its own process group: a kill takes the whole job, worker processes included, as a scheduler's does
    return subprocess.Popen([sys.executable, "-m", "occiforge.cli", "run", str(recipe), "-q"], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _finish(recipe: Path) -> None:
    proc = _run(recipe)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]


def _outputs(run: Path) -> dict[str, str]:
    """What a run produced, by content (gzip headers carry a time, so shards are compared unpacked)."""
    out = {}
    for pattern in ("data/*/*/*.jsonl.gz", "tokens/*/*.bin", "models/*/model.safetensors", "eval/*/results.json"):
        for path in sorted(run.glob(pattern)):
            data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            if path.name == "results.json":
                data = json.dumps(json.loads(data)["bpb"], sort_keys=True).encode()
            out[str(path.relative_to(run))] = hashlib.sha256(data).hexdigest()
    return out


@pytest.mark.slow
@pytest.mark.timeout(1800)
# Kills take the whole process group, as a scheduler's do. Once, on a saturated machine and when only
# the parent was killed, a rerun after a kill in the MinHash pass did not finish; the cause was not
# found, and the test has passed in every run since (CI and local), so it is no longer marked xfail.
def test_sigkill_anywhere_then_rerun_gives_the_same_artifacts(tmp_path: Path):
    reference = _recipe(tmp_path, "reference")
    t0 = time.perf_counter()
    _finish(reference)
    duration = time.perf_counter() - t0
    expected = _outputs(tmp_path / "reference")
    assert {"models/cpt-de/model.safetensors", "models/instruct/model.safetensors"} <= set(expected)
    assert any(k.startswith("data/") for k in expected)

    rng = random.Random(20261130)
    for trial in range(TRIALS):
        recipe = _recipe(tmp_path, f"trial{trial}")
        proc = _run(recipe)
        time.sleep(rng.uniform(0.15, 0.85) * duration)  # somewhere in data, tokens, train or eval
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        _finish(recipe)
        assert _outputs(tmp_path / f"trial{trial}") == expected, f"trial {trial} differs after a kill"
