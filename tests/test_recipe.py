from pathlib import Path

import pytest
import yaml

from occiforge.errors import UserError
from occiforge.recipe import load_recipe, set_path, validate_tree
from tests.conftest import REPO, tiny_tree

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert any(p.name == "demo.yaml" for p in RECIPES)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads_and_validates(path: Path):
    recipe = load_recipe(path)
    assert recipe.languages and recipe.plan(), f"{path.name} plans no model"


def _error(tree: dict, tmp_path: Path) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    with pytest.raises(UserError) as e:
        load_recipe(path)
    return str(e.value)


def test_unknown_key_names_path_and_file(tmp_path: Path):
    tree = tiny_tree(tmp_path)
    tree["train"]["optim"]["lrr"] = 0.1
    msg = _error(tree, tmp_path)
    assert msg == f"{tmp_path / 'r.yaml'}: train.optim.lrr: unknown key"


@pytest.mark.parametrize("edit, said", [
    (lambda t: t.update(langauges=t.pop("languages")), "langauges: unknown key (did you mean 'languages'?) (+1 more)"),
    (lambda t: t["data"]["sources"][0].update(pth=t["data"]["sources"][0].pop("path")),
     "data.sources.0.pth: unknown key (did you mean 'path'?) (+1 more)"),
    (lambda t: t["models"].update(base={"mixtur": {"en": 1}}), "models.base.mixtur: unknown key (did you mean 'mixture'?)"),
    (lambda t: t["models"]["base"].update(kind="pretrian"), "models.base.kind: 'pretrian' is not one of pretrain, bilingual, sft"),
    (lambda t: t["models"].update(base={"init": "scratch"}), "models.base: give exactly one of 'mixture'"),
])
def test_a_typo_in_a_required_key_names_the_typo_not_the_missing_key(tmp_path: Path, edit, said):
    tree = tiny_tree(tmp_path)
    edit(tree)
    msg = _error(tree, tmp_path)
    assert msg.startswith(f"{tmp_path / 'r.yaml'}: {said}"), msg


@pytest.mark.parametrize("edit, said", [
    (lambda t: t["models"]["cpt"].update(replay=1.0), "models.cpt.replay: Input should be less than 1"),
    (lambda t: t["train"]["optim"].update(betas=[0.9, 1.5]), "train.optim.betas.1: Input should be less than 1"),
    (lambda t: t["train"]["optim"].update(betas=[-0.1, 0.99]), "train.optim.betas.0: Input should be greater than or equal to 0"),
    (lambda t: t["train"].update(seq_len=64), "train.seq_len: 64 (+1 for the shifted target) is above the 64 positions"),
])
def test_values_that_cannot_train_are_refused_at_validation(tmp_path: Path, edit, said):
    tree = tiny_tree(tmp_path)
    edit(tree)
    assert said in _error(tree, tmp_path)


def test_wrong_type_names_path(tmp_path: Path):
    tree = tiny_tree(tmp_path)
    tree["models"]["cpt"]["replay"] = "lots"
    msg = _error(tree, tmp_path)
    assert "models.cpt.replay" in msg and "valid number" in msg and "\n" not in msg


@pytest.mark.parametrize("edit, key", [
    (lambda t: t["train"]["optim"].update(lr=True), "train.optim.lr"),  # lax pydantic: lr 1.0
    (lambda t: t["train"].update(batch_size=True), "train.batch_size"),
    (lambda t: t["train"]["optim"].update(betas=[0.9, True]), "train.optim.betas"),
    (lambda t: t["models"]["base"]["mixture"].update(en=True), "models.base.mixture"),
])
def test_true_or_false_is_no_number(tmp_path: Path, edit, key):
    tree = tiny_tree(tmp_path)
    edit(tree)
    assert _error(tree, tmp_path) == f"{tmp_path / 'r.yaml'}: {key}: expected a number, not true/false"


def test_a_key_given_twice_names_its_line(tmp_path: Path, tiny_recipe: Path):
    path = tmp_path / "dup.yaml"
    path.write_text(tiny_recipe.read_text().replace("train:\n", "train:\n  steps: 400\n", 1))
    with pytest.raises(UserError, match=r"dup.yaml: line \d+ invalid YAML: duplicate key 'steps'"):
        load_recipe(path)


def test_merge_keys_still_load_and_may_be_overridden(tmp_path: Path, tiny_recipe: Path):
    path = tmp_path / "merge.yaml"
    tree = yaml.safe_load(tiny_recipe.read_text())
    tree["train"].pop("batch_size", None)
    body = yaml.safe_dump(tree, sort_keys=False).replace("train:\n", "train:\n  <<: {batch_size: 3, steps: 99}\n", 1)
    path.write_text(body)
    recipe = load_recipe(path)
    assert recipe.train.batch_size == 3 and recipe.train.steps == tree["train"]["steps"]  # the explicit key wins
    path.write_text("name: x\n? [a, b]\n: 1\n")
    with pytest.raises(UserError, match=r"merge.yaml: line \d+ invalid YAML"):
        load_recipe(path)


def test_unknown_language(tmp_path: Path):
    msg = _error(tiny_tree(tmp_path, langs=("en", "xx")), tmp_path)
    assert "languages" in msg and "'xx'" in msg


def test_model_language_must_be_in_run(tmp_path: Path):
    tree = tiny_tree(tmp_path)
    tree["models"]["joint"] = {"mixture": {"en": 1, "fr": 1}}
    assert "['fr'] are not in 'languages'" in _error(tree, tmp_path)


def test_init_must_come_before(tmp_path: Path):
    tree = tiny_tree(tmp_path)
    tree["models"] = {"cpt": {"init": "base", "targets": ["de"]}, "base": {"mixture": {"en": 1}}}
    assert "must be defined before" in _error(tree, tmp_path)


def test_overrides_nested_new_key_and_list(tiny_recipe: Path):
    r = load_recipe(tiny_recipe, ["train.steps=7", "models.cpt.replay=0", "models.extra.mixture={de: 1}",
                                  "models.extra.init=base", "data.sources.0.priority=3"])
    assert r.train.steps == 7 and r.models["cpt"].replay == 0.0 and r.data.sources[0].priority == 3
    names = [m.name for m in r.plan()]
    assert names == ["base", "cpt-de", "extra"]
    assert r.plan()[1].mixture == {"de": 1.0}


def test_bad_override_paths(tiny_recipe: Path):
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        load_recipe(tiny_recipe, ["train.steps"])
    with pytest.raises(UserError, match="not a valid index"):
        load_recipe(tiny_recipe, ["data.sources.5.name=x"])
    with pytest.raises(UserError, match="train.stepz: unknown key"):
        load_recipe(tiny_recipe, ["train.stepz=3"])


def test_bilingual_plan_uses_replay(tmp_path: Path):
    r = validate_tree(tiny_tree(tmp_path, langs=("en", "de", "fr")), "x")
    plan = {m.name: m for m in r.plan()}
    assert plan["cpt-de"].mixture == pytest.approx({"de": 0.7, "en": 0.3})
    assert plan["cpt-fr"].init == "base" and plan["cpt-fr"].steps == 6


def test_invalid_yaml_reports_line(tmp_path: Path):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nlanguages: [en\n")
    with pytest.raises(UserError, match=r"r.yaml: line \d+ invalid YAML"):
        load_recipe(path)


def test_set_path_creates_dicts():
    tree: dict = {"a": {"b": 1}}
    set_path(tree, "a.c.d", 2)
    assert tree == {"a": {"b": 1, "c": {"d": 2}}}
