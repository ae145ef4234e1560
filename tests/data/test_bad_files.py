"""Damaged input read by the checked readers directly: an enormous record, a truncated Parquet file,
a truncated WARC file. Each is counted (stats key `bad|<reason>|<file>`) and named `file:where` in
the log while reading goes on, or is one `BadInput` with `on_error: fail`."""

from __future__ import annotations

from pathlib import Path

import pytest
from loguru import logger

from occiforge.data import formats
from occiforge.data.formats import (
    BadInput,
    SafeJsonlReader,
    SafeParquetReader,
    SafeWarcReader,
)
from tests.data.helpers import TEXTS, variant, write_jsonl


@pytest.fixture
def log() -> list[str]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING")
    yield lines
    logger.remove(sink)


def _read(reader, name: str) -> list:
    return list(reader.read_file(name))


def _bad(reader) -> dict[str, int]:
    return {k: v.total for k, v in reader.stats.stats.items() if k.startswith("bad|")}


def test_enormous_record_is_counted_with_its_line_and_the_next_ones_are_read(tmp_path: Path, monkeypatch, log):
    monkeypatch.setattr(formats, "MAX_RECORD_BYTES", 4000)
    recs = [{"id": "a", "text": TEXTS["de"]}, {"id": "big", "text": "Wort " * 2000}, {"id": "c", "text": variant(TEXTS["de"], 3)}]
    path = write_jsonl(tmp_path / "de.jsonl", recs)
    reader = SafeJsonlReader(str(tmp_path))
    assert [d.id for d in _read(reader, "de.jsonl")] == ["a", "c"]
    assert _bad(reader) == {f"bad|record_too_large|{path}": 1}
    assert any(f"{path}:2: record_too_large" in line for line in log)
    with pytest.raises(BadInput, match=f"{path}:2: record_too_large"):
        _read(SafeJsonlReader(str(tmp_path), on_error="fail"), "de.jsonl")


def test_enormous_text_in_parquet_is_counted_too(tmp_path: Path, monkeypatch, log):
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setattr(formats, "MAX_RECORD_BYTES", 4000)
    pq.write_table(pa.Table.from_pylist([{"id": "a", "text": TEXTS["fr"]}, {"id": "big", "text": "mot " * 2000}]), tmp_path / "fr.parquet")
    reader = SafeParquetReader(str(tmp_path))
    assert [d.id for d in _read(reader, "fr.parquet")] == ["a"]
    assert _bad(reader) == {f"bad|record_too_large|{tmp_path / 'fr.parquet'}": 1}
    assert any(f"{tmp_path / 'fr.parquet'}:2: record_too_large" in line for line in log)


def _parquet(path: Path, n: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{"id": f"f{i}", "text": variant(TEXTS["fr"], i)} for i in range(n)]), path, row_group_size=100)
    return path


def test_truncated_parquet_is_counted_not_fatal(tmp_path: Path, log):
    full = _parquet(tmp_path / "full.parquet", 1000)
    (tmp_path / "in").mkdir()
    cut = tmp_path / "in" / "fr.parquet"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    reader = SafeParquetReader(str(tmp_path / "in"))
    assert _read(reader, "fr.parquet") == []  # the footer (schema, row groups) is gone: nothing is readable
    assert _bad(reader) == {f"bad|truncated_or_unreadable|{cut}": 1}
    assert any(f"{cut}:row 0: truncated_or_unreadable" in line for line in log)
    with pytest.raises(BadInput, match="truncated_or_unreadable"):
        _read(SafeParquetReader(str(tmp_path / "in"), on_error="fail"), "fr.parquet")


def _warc(path: Path, n: int) -> Path:
    from io import BytesIO

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        for i in range(n):
            html = f"<html><body><p>{variant(TEXTS['de'], i)}</p></body></html>".encode()
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
            w.write_record(w.create_warc_record(f"https://a.de/{i}", "response", payload=BytesIO(html), http_headers=headers))
    return path


def _html_text(html: bytes) -> str:  # trafilatura is not under test here
    return html.decode().removeprefix("<html><body><p>").removesuffix("</p></body></html>")


def test_truncated_warc_keeps_the_records_before_the_cut_and_counts_the_file(tmp_path: Path, log):
    full = _warc(tmp_path / "full.warc.gz", 200)
    (tmp_path / "in").mkdir()
    cut = tmp_path / "in" / "a.warc.gz"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    reader = SafeWarcReader(str(tmp_path / "in"), extract=_html_text)
    docs = _read(reader, "a.warc.gz")
    assert 50 <= len(docs) < 200 and all(d.text.endswith("am Wasser.") for d in docs)  # whole records only
    assert _bad(reader) == {f"bad|truncated_or_unreadable|{cut}": 1}
    assert any(f"{cut}:after record" in line and "truncated_or_unreadable" in line for line in log)
    with pytest.raises(BadInput, match=f"{cut}:after record .*truncated_or_unreadable"):
        _read(SafeWarcReader(str(tmp_path / "in"), extract=_html_text, on_error="fail"), "a.warc.gz")
