"""The data stage on the demo corpus: language ID, dedup, split, per-language stats, `data stats`."""

import gzip
import json
from pathlib import Path

import pytest
from datatrove.data import Document

from occiforge.cli import main
from occiforge.data.steps import LanguageIdFilter, SplitAnnotator
from occiforge.languages import all_codes

CORE = ["en", "de", "fr", "es", "it"]


def test_lid_filter_keeps_matching_and_drops_mismatch():
    lid = LanguageIdFilter(0.5, all_codes())
    de = "Am Wochenende fahren wir mit dem Zug an den See und essen dort zu Mittag."
    assert lid.filter(Document(text=de, id="1", metadata={"language": "de"})) is True
    assert lid.filter(Document(text=de, id="2", metadata={"language": "nl"})) == (False, "lid_mismatch")
    strict = LanguageIdFilter(0.999999, all_codes())
    assert strict.filter(Document(text="Hotel Europa", id="3", metadata={"language": "de"}))[0] is False


def test_split_is_deterministic_and_respects_given_split():
    docs = [Document("t", str(i), metadata={"language": "en"}) for i in range(400)]
    docs[0].metadata["split"] = "heldout"
    first = [d.metadata["split"] for d in SplitAnnotator(0.25).run(iter(docs))]
    assert first[0] == "heldout"
    again = [d.metadata["split"] for d in SplitAnnotator(0.25).run(Document("t", str(i), metadata={"language": "en"}) for i in range(400))]
    assert first[1:] == again[1:] and 0.18 < again.count("heldout") / 400 < 0.32


def test_data_stage_on_demo_corpus(tmp_path: Path, tiny_recipe: Path):
    assert main(["data", "-q", "-c", str(tiny_recipe), "--set", f"languages={CORE}", "--set", "models={}"]) == 0
    data = tiny_recipe.parent / "run" / "data"
    stats = json.loads((data / "stats.json").read_text())
    for lang in CORE:
        row = stats[lang]
        assert row["dropped"] == {"lid_mismatch": 1, "duplicate": 1}, lang
        assert row["kept"] == row["read"] - 2 == row["train_docs"] + row["heldout_docs"]
        with gzip.open(next((data / lang / "heldout").glob("*.jsonl.gz")), "rt") as f:
            docs = [json.loads(line) for line in f]
        assert docs and all(d["metadata"]["language"] == lang == d["metadata"]["lid"] for d in docs)
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["per_language"]["de"]["kept"] == stats["de"]["kept"]


def test_hf_reader_labels_a_one_language_dataset():
    from occiforge.data.readers import build_readers
    from occiforge.recipe import SourceConfig

    src = SourceConfig(name="wiki", path="hf:someone/wiki-de", languages=["de"], text_key="content")
    (reader,) = build_readers(src, ["de"])
    assert reader.dataset == "someone/wiki-de" and reader.dataset_options == {"split": "train"}
    doc = reader.get_document_from_dict({"content": "Guten Tag", "id": 7}, "wiki", 0)
    assert doc.text == "Guten Tag" and doc.metadata["language"] == "de" and doc.id == "wiki/7"


def test_documents_of_other_languages_are_dropped():
    from occiforge.data.steps import SourceLanguageFilter

    keep = SourceLanguageFilter({"web": ["de", "en"]})
    assert keep.filter(Document("x", "1", metadata={"language": "de", "source": "web"})) is True
    assert keep.filter(Document("x", "2", metadata={"language": "uk", "source": "web"})) == (False, "other_language")


@pytest.mark.slow
def test_data_stats_prints_the_table(tiny_recipe: Path, capsys):
    assert main(["data", "-q", "-c", str(tiny_recipe), "--set", "models={}"]) == 0
    capsys.readouterr()
    assert main(["data", "stats", "-c", str(tiny_recipe), "--set", "models={}"]) == 0
    head, *rows = capsys.readouterr().out.splitlines()
    assert head.split()[:5] == ["lang", "read", "kept", "heldout", "chars"] and "-lid_mismatch" in head and "-duplicate" in head
    assert [r.split()[0] for r in rows] == ["en", "de"]
