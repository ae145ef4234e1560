"""Language ID assigns labels to unlabelled documents; each source keeps only its own languages."""

from __future__ import annotations

from pathlib import Path

from datatrove.data import Document

from occiforge.cli import main
from occiforge.data.steps import LanguageIdFilter
from occiforge.languages import all_codes
from tests.data.helpers import TEXTS, read_out, recipe, stats, write_jsonl


def test_lid_assigns_a_label_where_none_is_given():
    lid = LanguageIdFilter(0.5, all_codes())
    doc = Document(text=TEXTS["fr"], id="1", metadata={"language": None})
    assert lid.filter(doc) is True and doc.metadata["language"] == "fr"
    noise = Document(text="Hotel Europa", id="2", metadata={"language": None})
    assert LanguageIdFilter(0.999999, all_codes()).filter(noise) == (False, "lid_low")


def test_lid_checks_a_given_label():
    lid = LanguageIdFilter(0.5, all_codes())
    assert lid.filter(Document(text=TEXTS["de"], id="1", metadata={"language": "de"})) is True
    assert lid.filter(Document(text=TEXTS["de"], id="2", metadata={"language": "nl"})) == (False, "lid_mismatch")


def test_unlabelled_source_limited_to_one_language_lets_no_other_run_language_through(tmp_path: Path):
    """The issue's bug: a source limited to [de] let `fr` through because `fr` is a run language."""
    write_jsonl(tmp_path / "crawl" / "part-0.jsonl", [{"id": lang, "text": t} for lang, t in TEXTS.items()])
    write_jsonl(tmp_path / "fr" / "fr.jsonl", [{"id": "f", "text": TEXTS["fr"].replace("lac", "fleuve")}])
    sources = [{"name": "crawl", "path": str(tmp_path / "crawl"), "glob": "*.jsonl", "languages": ["de"]},
               {"name": "frsrc", "path": str(tmp_path / "fr"), "languages": ["fr"]}]
    r = recipe(tmp_path, sources, ["de", "fr"], heldout_fraction=0.0, near_dedup={"enabled": False})
    assert main(["data", "-q", "-c", str(r)]) == 0
    run = tmp_path / "run"
    assert [d["id"] for d in read_out(run, "de")] == ["crawl/de"]
    assert [d["metadata"]["source"] for d in read_out(run, "fr")] == ["frsrc"]
    assert stats(run)["fr"]["dropped"] == {"other_language": 1} and stats(run)["de"]["lid_assigned"] == 1
