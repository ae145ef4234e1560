"""The runner: caching by manifest, --force, per-model reuse, and resume after Ctrl-C or kill."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from occiforge.cli import main
from tests.conftest import tiny_tree, wait_for_lines


def _mtimes(run: Path) -> dict[str, float]:
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for p in run.rglob("manifest.json")}


def test_rerun_skips_finished_stages(capsys, tiny_recipe: Path):
    run = tiny_recipe.parent / "run"
    assert main(["run", str(tiny_recipe)]) == 0
    first = _mtimes(run)
    assert {"data/manifest.json", "models/base/manifest.json", "models/cpt-de/manifest.json", "eval/base/manifest.json", "report/manifest.json"} <= set(first)
    assert (run / "recipe.resolved.yaml").is_file()
    capsys.readouterr()
    assert main(["run", str(tiny_recipe)]) == 0
    err = capsys.readouterr().err
    assert err.count("up to date") == 6 and "▶" not in err
    assert _mtimes(run) == first

    assert main(["run", str(tiny_recipe), "-q", "--force", "eval", "--to", "eval"]) == 0
    after = _mtimes(run)
    assert after["eval/manifest.json"] != first["eval/manifest.json"]
    assert after["models/manifest.json"] == first["models/manifest.json"]


def test_changing_one_model_retrains_only_that_model(tiny_recipe: Path):
    run = tiny_recipe.parent / "run"
    assert main(["run", str(tiny_recipe), "-q"]) == 0
    first = _mtimes(run)
    assert main(["run", str(tiny_recipe), "-q", "--set", "models.cpt.steps=5"]) == 0
    after = _mtimes(run)
    for same in ("data/manifest.json", "tokens/manifest.json", "models/base/manifest.json", "eval/base/manifest.json"):
        assert after[same] == first[same], same
    for changed in ("models/cpt-de/manifest.json", "eval/cpt-de/manifest.json", "report/manifest.json"):
        assert after[changed] != first[changed], changed


def _start(recipe: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "occiforge.cli", "run", str(recipe)],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.slow  # three `occiforge run` processes
def test_interrupted_run_resumes_without_redoing_work(tmp_path: Path):
    # No periodic checkpoint: the Ctrl-C writes the one the later runs resume from, a few steps in
    # (the poll below reacts within 50 ms; 300 steps leave seconds to interrupt in).
    tree = tiny_tree(tmp_path / "run")
    tree["train"].update(steps=300, save_every=10_000, log_every=10)
    tree["models"] = {"base": {"mixture": {"en": 1.0}}}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tree, sort_keys=False))
    run, log = tmp_path / "run", tmp_path / "run" / "models" / ".base.ckpt" / "train_log.jsonl"

    proc = _start(recipe)  # Ctrl-C
    wait_for_lines(log, 1, proc, timeout=120)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "run the same command again to resume" in err  # "stopped by SIGINT: ..."
    assert not (run / "models" / "base").exists() and not (run / "models" / "manifest.json").exists()
    step = json.loads((log.parent / "latest" / "trainer_state.json").read_text())["step"]

    data_manifest = (run / "data" / "manifest.json").stat().st_mtime_ns
    proc = _start(recipe)  # kill -9, the hard way, once it trains past the checkpoint
    wait_for_lines(log, step // 10 + 2, proc, timeout=120)
    proc.kill()
    proc.communicate(timeout=60)
    assert not (run / "models" / "base" / "manifest.json").exists()

    proc = _start(recipe)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "data: up to date" in err and "tokenizer: up to date" in err and "tokens: up to date" in err
    assert "base: resuming from step" in err
    assert (run / "data" / "manifest.json").stat().st_mtime_ns == data_manifest
    assert (run / "models" / "base" / "model.safetensors").is_file() and not (run / "models" / ".base.ckpt").exists()
    assert (run / "report" / "index.html").is_file()
