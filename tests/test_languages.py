import json

import pytest
import yaml

from occiforge import languages
from occiforge.errors import UserError
from occiforge.recipe import validate_tree
from tests.conftest import tiny_tree

EU24 = "bg cs da de el en es et fi fr ga hr hu it lt lv mt nl pl pt ro sk sl sv".split()


def test_table_has_the_24_official_languages():
    assert list(languages.EU_LANGUAGES) == EU24
    assert languages.get("el").flores == "ell_Grek"
    assert languages.get("bg").script == "Cyrl"
    with pytest.raises(UserError, match="unknown language code 'xx'"):
        languages.get("xx")


def test_py3langid_covers_every_table_language():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE)
    assert set(EU24) <= set(ident.nb_classes)


def test_adding_a_language_is_one_entry(tmp_path, monkeypatch):
    monkeypatch.setattr(languages, "_TABLE", dict(languages._TABLE))
    languages.register(languages.Language("uk", "ukr", "Cyrl", "Ukrainian", "українська", eu=False))
    r = validate_tree(tiny_tree(tmp_path, langs=("en", "uk")), "x")
    assert [m.name for m in r.plan()] == ["base", "cpt-uk"]
    assert "uk" not in languages.EU_LANGUAGES


UKRAINIAN = {"code": "uk", "iso3": "ukr", "script": "Cyrl", "name": "Ukrainian", "native": "українська",
             "prompt": {"question": "Питання", "answer": "Відповідь", "passage": "Текст", "topic": "Тема",
                        "because": "тому що", "therefore": "отже"}}


@pytest.fixture
def table(monkeypatch):
    """The language table as it was before the test (recipes register their languages process-wide)."""
    monkeypatch.setattr(languages, "_TABLE", dict(languages._TABLE))


def test_a_recipe_adds_ukrainian_and_every_stage_treats_it_like_the_24(table, tmp_path, capsys):
    from occiforge.cli import main
    from occiforge.eval.prompts import words
    from tests.conftest import REPO

    tree = tiny_tree(tmp_path / "run", langs=("en", "uk"))
    tree["add_languages"] = [UKRAINIAN]
    tree["data"]["quality"] = {"gopher": False}  # the fixture's documents have 30-40 words, under Gopher's 50
    tree["data"]["sources"] = [{"name": "demo", "path": "builtin:demo", "languages": ["en"]},
                               {"name": "uk", "path": str(REPO / "tests" / "fixtures" / "uk"), "languages": ["uk"]}]
    path = tmp_path / "uk.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False, allow_unicode=True))
    assert main(["run", str(path), "-q"]) == 0, capsys.readouterr().err
    run = tmp_path / "run"
    stats = json.loads((run / "data" / "stats.json").read_text())
    assert stats["uk"]["kept"] == 12 and stats["uk"]["heldout_docs"] == 3 and stats["uk"]["dropped"] == {}  # py3langid knows Ukrainian
    assert json.loads((run / "tokens" / "manifest.json").read_text())["per_language"]["uk"]["tokens"] > 500
    bpb = json.loads((run / "eval" / "results.json").read_text())["bpb"]
    assert bpb["cpt-uk"]["uk"] < bpb["base"]["uk"]
    assert "<th>uk</th>" in (run / "report" / "index.html").read_text(encoding="utf-8")
    assert words("uk", "native")["question"] == "Питання" and languages.get("uk").flores == "ukr_Cyrl"


def test_a_recipe_language_cannot_redefine_a_builtin(table, tmp_path):
    tree = tiny_tree(tmp_path, langs=("en", "de"))
    tree["add_languages"] = [{**UKRAINIAN, "code": "de"}]
    with pytest.raises(UserError, match=r"^x: add_languages.0.code: 'de' is a built-in language \(German\)"):
        validate_tree(tree, "x")
    tree["add_languages"] = [{**UKRAINIAN, "prompt": {"question": "Питання"}}]
    with pytest.raises(UserError, match="add_languages.0.prompt: .*prompt words must be exactly"):
        validate_tree(tree, "x")
