import pytest

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
    monkeypatch.setitem(languages._TABLE, "uk", languages.Language("uk", "ukr", "Cyrl", "Ukrainian", "українська", eu=False))
    r = validate_tree(tiny_tree(tmp_path, langs=("en", "uk")), "x")
    assert [m.name for m in r.plan()] == ["base", "cpt-uk"]
    assert "uk" not in languages.EU_LANGUAGES
