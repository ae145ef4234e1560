"""Readers never lose input silently: bad lines and damaged files are counted, named and skipped
(or fatal with on_error: fail); every format yields the same document shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from occiforge.cli import main
from tests.data.helpers import TEXTS, read_out, recipe, stats, variant, write_jsonl


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("occiforge: error: ") and "Traceback" not in err, err
    return err


def _bad_file(tmp: Path) -> Path:
    """50 German documents; line 20 is Latin-1, and three more lines are malformed in other ways."""
    recs: list = [{"id": f"d{i}", "text": variant(TEXTS["de"], i)} for i in range(50)]
    recs[19] = json.dumps({"id": "d19", "text": variant(TEXTS["de"], 19)}, ensure_ascii=False).encode("latin-1")
    recs[30] = b'{"id": "d30", "text": "broken'
    recs[31] = {"id": "d31", "body": "no text key"}
    recs[32] = {"id": "d32", "text": 42}
    return write_jsonl(tmp / "corpus" / "de.jsonl", recs)


@pytest.mark.slow
def test_bad_lines_are_counted_per_file_and_reading_goes_on(tmp_path: Path):
    path = _bad_file(tmp_path)
    r = recipe(tmp_path, [{"name": "web", "path": str(tmp_path / "corpus")}], ["de"], near_dedup={"enabled": False})
    assert main(["data", "-q", "-c", str(r)]) == 0
    run = tmp_path / "run"
    assert len(read_out(run, "de")) == 46 == stats(run)["de"]["kept"]  # 50 minus the 4 bad lines: nothing else lost
    bad = json.loads((run / "data" / "bad_input.json").read_text())
    assert bad == {str(path): {"invalid_utf8": 1, "malformed_json": 1, "no_text": 1, "text_not_a_string": 1}}
    log = "".join(p.read_text() for p in (run / "data" / "logs" / "curate" / "logs").glob("*.log"))
    assert f"{path}:20: invalid_utf8" in log and f"{path}:31: malformed_json" in log and f"{path}:33: text_not_a_string" in log


def test_on_error_fail_is_one_line_exit_2(tmp_path: Path, capsys):
    path = _bad_file(tmp_path)
    r = recipe(tmp_path, [{"name": "web", "path": str(tmp_path / "corpus")}], ["de"], on_error="fail")
    assert main(["data", "-q", "-c", str(r)]) == 2
    assert f"{path}:20: invalid_utf8" in _one_line_error(capsys)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_truncated_compressed_file_is_counted_not_fatal(tmp_path: Path, suffix: str):
    full = write_jsonl(tmp_path / "full" / f"de{suffix}", [{"id": f"d{i}", "text": variant(TEXTS["de"], i)} for i in range(2000)])
    cut = tmp_path / "corpus" / f"de{suffix}"
    cut.parent.mkdir()
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    r = recipe(tmp_path, [{"name": "web", "path": str(tmp_path / "corpus")}], ["de"], near_dedup={"enabled": False})
    assert main(["data", "-q", "-c", str(r)]) == 0
    kept = stats(tmp_path / "run")["de"]["kept"]
    assert 0 < kept < 2000
    bad = json.loads((tmp_path / "run" / "data" / "bad_input.json").read_text())
    assert bad == {str(cut): {"truncated_or_unreadable": 1}}


@pytest.mark.slow
def test_parquet_and_zst_and_plain_sources_give_the_same_documents(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    recs = [{"id": f"f{i}", "text": variant(TEXTS["fr"], i), "url": f"https://x.fr/{i}"} for i in range(20)]
    (tmp_path / "pq").mkdir()
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "pq" / "fr.parquet")
    write_jsonl(tmp_path / "zst" / "fr.jsonl.zst", recs)
    outs = {}
    for name in ("pq", "zst"):
        r = recipe(tmp_path / name, [{"name": "s", "path": str(tmp_path / name)}], ["fr"], heldout_fraction=0.0, near_dedup={"enabled": False})
        assert main(["data", "-q", "-c", str(r)]) == 0
        outs[name] = sorted((d["id"], d["text"], d["metadata"]["url"], d["metadata"]["source"]) for d in read_out(tmp_path / name / "run", "fr"))
    assert outs["pq"] == outs["zst"] and len(outs["pq"]) == 20


def _warc(path: Path, pages: dict[str, str]) -> None:
    from io import BytesIO

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        for url, body in pages.items():
            html = f"<html><head><title>t</title></head><body><nav>Home | About | Contact</nav><article><p>{body}</p></article>" \
                   "<footer>We use cookies. Privacy policy</footer></body></html>"
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            w.write_record(w.create_warc_record(url, "response", payload=BytesIO(html.encode()), http_headers=headers))


def test_warc_main_text_is_extracted_and_labelled_by_lid(tmp_path: Path):
    _warc(tmp_path / "crawl" / "a.warc.gz", {"https://a.de/1": TEXTS["de"], "https://a.fr/1": TEXTS["fr"], "https://a.en/1": TEXTS["en"]})
    r = recipe(tmp_path, [{"name": "crawl", "path": str(tmp_path / "crawl"), "glob": "*.warc.gz", "languages": ["de", "fr"]}],
               ["de", "fr"], heldout_fraction=0.0)
    assert main(["data", "-q", "-c", str(r)]) == 0
    run = tmp_path / "run"
    (de,), (fr,) = read_out(run, "de"), read_out(run, "fr")
    assert de["text"].startswith("Am Wochenende") and "Home | About" not in de["text"] and de["metadata"]["url"] == "https://a.de/1"
    assert fr["metadata"]["lid"] == "fr"
    others = json.loads((run / "data" / "manifest.json").read_text())["other_languages"]
    assert others["en"]["dropped"] == {"other_language": 1}  # English is not a language of this source


@pytest.mark.slow
def test_hf_dataset_by_config_and_split_streams_a_local_dataset(tmp_path: Path):
    ds = tmp_path / "hfds"
    for config, lang in (("deu_Latn", "de"), ("fra_Latn", "fr")):
        write_jsonl(ds / config / "train.jsonl", [{"id": f"{lang}{i}", "text": variant(TEXTS[lang], i)} for i in range(6)])
    (ds / "README.md").write_text("---\nconfigs:\n- config_name: deu_Latn\n  data_files: deu_Latn/train.jsonl\n"
                                  "- config_name: fra_Latn\n  data_files: fra_Latn/train.jsonl\n---\n")
    r = recipe(tmp_path, [{"name": "fw2", "path": f"hf:{ds}", "config": "deu_Latn", "languages": ["de"]}], ["de"], heldout_fraction=0.0,
               near_dedup={"enabled": False})
    assert main(["data", "-q", "-c", str(r)]) == 0
    docs = read_out(tmp_path / "run", "de")
    assert sorted(d["id"] for d in docs) == [f"fw2/de{i}" for i in range(6)] and all(d["metadata"]["lid"] == "de" for d in docs)


def test_hub_source_without_network_is_one_line_exit_2(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: as good as no network
    r = recipe(tmp_path, [{"name": "fw2", "path": "hf:HuggingFaceFW/fineweb-2", "config": "pol_Latn", "languages": ["pl"]}], ["pl"])
    assert main(["data", "-q", "-c", str(r)]) == 2
    assert "needs the network" in _one_line_error(capsys)
