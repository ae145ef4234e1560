"""The recipe's eval stage scores multiple choice for every model and the report shows the leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from occiforge.cli import main
from occiforge.eval import leaderboard
from occiforge.recipe import load_recipe
from tests.conftest import tiny_tree

from .test_tasks import qa_items, write_jsonl


def test_eval_stage_scores_every_model_and_writes_the_leaderboard(tmp_path, tiny_model):
    quiz = write_jsonl(tmp_path / "quiz" / "en.jsonl", qa_items("en", 6))
    tree = tiny_tree(tmp_path / "run")
    tree["eval"] |= {"extra_models": {"outside": str(tiny_model)}, "fewshot": 1,
                     "mc": [{"path": "builtin:demo_qa", "max_items": 5, "fewshot": 0}, {"path": str(quiz.parent)}]}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tree))
    assert main(["run", str(recipe), "-q"]) == 0
    ev = tmp_path / "run" / "eval"
    results = json.loads((ev / "results.json").read_text())
    assert results["metric"] == "bpb" and set(results["bpb"]) == {"base", "cpt-de", "outside"}
    mc = results["mc"]
    assert set(mc) == {"base", "cpt-de", "outside"}
    assert set(mc["base"]["demo_qa"]) == {"en", "de"}  # the run's languages that the task has
    assert mc["base"]["demo_qa"]["de"]["n"] == 5 and mc["base"]["demo_qa"]["de"]["fewshot"] == 0
    assert mc["base"]["quiz"]["en"] == {**mc["base"]["quiz"]["en"], "n": 6, "fewshot": 1}
    board = json.loads((ev / "leaderboard.json").read_text())
    assert board == json.loads(json.dumps(leaderboard.build(mc)))
    assert (ev / "leaderboard.md").read_text().startswith("## Leaderboard")
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    assert "Multiple choice: demo_qa (acc)" in page and "Multiple choice: quiz (acc)" in page
    assert 'src="data:image/png;base64,' in page and "± " in page  # charts inlined, intervals shown

    # per-model caching: new items re-score every model, an unchanged recipe none
    before = {p: (p / "manifest.json").stat().st_mtime_ns for p in ev.iterdir() if p.is_dir()}
    assert main(["eval", "-c", str(recipe), "-q"]) == 0
    assert {p: (p / "manifest.json").stat().st_mtime_ns for p in before} == before
    write_jsonl(quiz, qa_items("en", 7))
    assert main(["eval", "-c", str(recipe), "-q"]) == 0
    assert all((p / "manifest.json").stat().st_mtime_ns != t for p, t in before.items())
    assert json.loads((ev / "results.json").read_text())["mc"]["base"]["quiz"]["en"]["n"] == 7


def test_leaderboard_averages_per_language_over_the_tasks_it_has():
    row = lambda acc, norm: {"acc": acc, "acc_norm": norm, "n": 10}  # noqa: E731
    board = leaderboard.build({"m": {"m_arc": {"de": row(0.1, 0.4)}, "xcopa": {"de": row(0.6, 0.0), "it": row(0.7, 0.0)}}})
    assert board["metric"] == {"m_arc": "acc_norm", "xcopa": "acc"}
    assert board["average"]["m"] == pytest.approx({"de": 0.5, "it": 0.7})
    assert board["overall"]["m"] == pytest.approx(0.6)
    assert "| m | 50.0 | 70.0 | 60.0 |" in leaderboard.to_markdown(board)


def test_demo_recipe_scores_its_multiple_choice_items():
    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "demo.yaml")
    assert [m.path for m in recipe.eval.mc] == ["builtin:demo_qa"]
