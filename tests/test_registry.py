"""House v2: the stage registry, the model registry, --force, unique model names, stage inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from occiforge import registry, runner
from occiforge.cli import main
from occiforge.context import Stage
from occiforge.recipe import validate_tree
from tests.conftest import REPO, fails_in_one_line, tiny_tree, write_recipe


def test_registry_graph_is_ordered_and_acyclic():
    stages = registry.stages()
    runner.check_graph(stages)  # raises if a stage reads one that runs later (a cycle needs that)
    assert list(stages)[:2] == ["data", "tokenizer"] and "train" in stages
    for name, stage in stages.items():
        assert stage.name == name and all(dep in stages for dep in stage.reads)
    noop = lambda *a: {}  # noqa: E731
    bad = {"a": Stage("a", "a", ("b",), noop, noop), "b": Stage("b", "b", ("a",), noop, noop)}
    with pytest.raises(RuntimeError, match="'a' reads \\['b'\\]"):
        runner.check_graph(bad)


def test_every_stage_is_reachable_from_a_shipped_recipe():
    from occiforge.recipe import load_recipe

    reached: set[str] = set()
    for path in sorted((REPO / "recipes").glob("*.yaml")):
        recipe = load_recipe(path)
        ctx = runner.make_context(recipe)
        runner.check_enabled(ctx, ctx.stages)  # no shipped recipe switches on a stage without its inputs
        reached |= {n for n, s in ctx.stages.items() if s.enabled(recipe)}
    assert reached == set(registry.stages())


def test_duplicate_model_names_name_both_keys(capsys, tmp_path):
    tree = tiny_tree(tmp_path / "run")
    tree["models"]["cpt-de"] = {"init": "base", "mixture": {"de": 1.0}}
    err = fails_in_one_line(capsys, ["run", write_recipe(tmp_path, tree)])
    assert "models.cpt-de" in err and "models.cpt " in err and "'cpt-de'" in err
    assert not (tmp_path / "run").exists()


def test_both_mixture_and_targets_is_an_error(capsys, tmp_path):
    tree = tiny_tree(tmp_path / "run")
    tree["models"]["cpt"]["mixture"] = {"de": 1.0}
    assert "models.cpt: give exactly one of 'mixture'" in fails_in_one_line(capsys, ["validate", write_recipe(tmp_path, tree)])


def test_model_kinds_are_explicit_or_inferred(tmp_path):
    tree = tiny_tree(tmp_path / "run", langs=("en", "de", "fr"))
    tree["models"]["joint"] = {"kind": "pretrain", "init": "base", "mixture": {"en": 1, "de": 1}}
    plan = {pm.name: pm for pm in validate_tree(tree, "t").plan()}
    assert (plan["base"].kind, plan["cpt-de"].kind, plan["joint"].kind) == ("base", "cpt", "joint")
    assert (plan["cpt-fr"].target, plan["cpt-fr"].replay, plan["cpt-fr"].key) == ("fr", 0.3, "cpt")


def test_stage_on_without_its_input_is_refused(capsys, tmp_path):
    tree = tiny_tree(tmp_path / "run", eval={"bpb": False})
    err = fails_in_one_line(capsys, ["run", write_recipe(tmp_path, tree)])
    assert "stage 'report' (report.enabled) reads 'eval'" in err and "eval.bpb or eval.mc" in err
    assert not (tmp_path / "run").exists()
    assert main(["run", write_recipe(tmp_path, tiny_tree(tmp_path / "run", eval={"bpb": False}, report={"enabled": False})),
                 "-q", "--to", "tokens"]) == 0


def _mtimes(run: Path, pattern: str) -> dict[str, int]:
    return {str(p.relative_to(run)): p.stat().st_mtime_ns for p in sorted(run.glob(pattern))}


def test_force_reruns_per_model_work_and_registry_lists_models(tiny_recipe: Path):
    run = tiny_recipe.parent / "run"
    assert main(["run", str(tiny_recipe), "-q"]) == 0
    weights, scores = _mtimes(run, "models/*/model.safetensors"), _mtimes(run, "eval/*/results.json")
    assert set(weights) == {"models/base/model.safetensors", "models/cpt-de/model.safetensors"}
    registry_rows = json.loads((run / "models" / "manifest.json").read_text())["models"]
    by_name = {row["name"]: row for row in registry_rows}
    assert by_name["cpt-de"] | {"fingerprint": None, "per_language": None} == {
        "name": "cpt-de", "folder": "models/cpt-de", "kind": "cpt", "stage": "train", "fingerprint": None,
        "init": "base", "target": "de", "replay": 0.3, "replay_language": "en", "mixture": {"de": 0.7, "en": 0.3},
        "steps": 6, "tokens_seen": 6 * 4 * 32, "per_language": None}
    assert set(by_name["cpt-de"]["per_language"]) == {"de", "en"}  # tokens and epochs of each language read
    assert by_name["base"]["kind"] == "base" and by_name["base"]["target"] is None
    data = _mtimes(run, "data/manifest.json")

    assert main(["run", str(tiny_recipe), "-q", "--force", "eval"]) == 0
    assert _mtimes(run, "models/*/model.safetensors") == weights
    rescored = _mtimes(run, "eval/*/results.json")
    assert all(rescored[k] != v for k, v in scores.items()), "--force eval must rescore every model"

    assert main(["run", str(tiny_recipe), "-q", "--force", "train", "--to", "train"]) == 0
    retrained = _mtimes(run, "models/*/model.safetensors")
    assert all(retrained[k] != v for k, v in weights.items()), "--force train must retrain every model"
    assert _mtimes(run, "data/manifest.json") == data


def test_help_and_validate_import_no_torch(tiny_recipe: Path):
    probe = ("import sys; from occiforge.cli import main; import contextlib, io\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    try: main(sys.argv[1:])\n"
             "    except SystemExit: pass\n"
             "heavy = [m for m in ('torch', 'transformers', 'datatrove', 'matplotlib') if m in sys.modules]\n"
             "print(heavy)")
    for argv in (["--help"], ["validate", str(tiny_recipe)], ["train", "--help"]):
        out = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=60)
        assert out.stdout.strip().splitlines()[-1] == "[]", (argv, out.stdout, out.stderr)


def test_import_contracts_hold():
    """shared/docs/DESIGN.md's dependency rule, as the import-linter contracts in pyproject.toml."""
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--config", str(REPO / "pyproject.toml")], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0 and "0 broken" in out.stdout, out.stdout[-3000:]
