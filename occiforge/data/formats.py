"""File readers that never lose input silently: JSONL (plain, .gz, .zst), Parquet and WARC.

datatrove's `JsonlReader` decodes a whole file as text, so one invalid UTF-8 byte ends that
file's reading (43 of 50 documents lost, exit 0), and its zstd path cannot open a local file
(`io.UnsupportedOperation`). Here every file is read as bytes and every line decoded on its
own: a malformed line, invalid UTF-8, a record without a string `text`, an empty or enormous
record, or a truncated/unreadable file is counted (stats key `bad|<reason>|<file>`) and named
`file:line` in the log, and reading goes on; with `on_error: fail` it raises `BadInput`.
A truncated .zst file reads as a clean EOF through `zstandard.stream_reader`, so the frame end
is checked explicitly; so does a truncated WARC file through warcio (a cut record is yielded
without its Content-Length, or dropped), so its last record and the bytes after it are checked.
The record size limit applies to every format (`record_too_large`; tests/data/test_bad_files.py).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.readers.base import BaseDiskReader
from datatrove.utils.logging import logger

MAX_RECORD_BYTES = 64 * 2**20  # a single document larger than this is bad input, not text
CHUNK = 1 << 20


class BadInput(Exception):
    """Input the recipe said to fail on (`on_error: fail`); its message is one line for the user."""


def _zst_lines(f: BinaryIO) -> Iterator[bytes]:
    import zstandard

    dobj, buf, started = zstandard.ZstdDecompressor().decompressobj(), b"", False
    while chunk := f.read(CHUNK):
        started = True
        while chunk:
            buf += dobj.decompress(chunk)
            chunk = b""
            if dobj.eof:  # a frame ended; the rest (if any) starts the next frame
                chunk, dobj = dobj.unused_data, zstandard.ZstdDecompressor().decompressobj()
                started = bool(chunk)
        *lines, buf = buf.split(b"\n")
        yield from lines
    if started:  # the partial last line belongs to the cut record: not yielded, as gzip does
        raise EOFError("zstd stream ended inside a frame (truncated file)")
    if buf:
        yield buf


def _plain_lines(f: BinaryIO, gz: bool) -> Iterator[bytes]:
    stream = gzip.GzipFile(fileobj=f) if gz else f
    for line in stream:
        yield line.rstrip(b"\n")


def iter_lines(f: BinaryIO, path: str) -> Iterator[bytes]:
    """Raw lines of a JSONL file, decompressed by its suffix; raises on a truncated file."""
    if path.endswith(".zst"):
        return _zst_lines(f)
    return _plain_lines(f, path.endswith(".gz"))


class _SafeReader(BaseDiskReader):
    """Shared bad-input accounting: count per file and reason, log `file:line`, or fail."""

    def __init__(self, data_folder: Any, *, on_error: str = "skip", files: list[str] | None = None, **kwargs: Any):
        super().__init__(data_folder, **kwargs)
        self.on_error = on_error
        self.files = files  # an explicit file list (sharded over tasks) instead of the glob

    def bad(self, path: str, line: int | str, reason: str, detail: str = "") -> None:
        where = f"{self.data_folder.resolve_paths(path)}:{line}"
        msg = f"{where}: {reason}" + (f" ({detail[:200]})" if detail else "")
        if self.on_error == "fail":
            raise BadInput(f"bad input at {msg} (data.on_error: fail)")
        logger.warning(f"skipped {msg}")
        self.stat_update(f"bad|{reason}|{self.data_folder.resolve_paths(path)}")

    def record(self, data: Any, path: str, line: int | str) -> Any:
        """A document from one parsed record, or None (counted) when it has no usable text."""
        if not isinstance(data, dict):
            return self.bad(path, line, "not_an_object")
        text = data.get(self.text_key)
        if text is None:
            return self.bad(path, line, "no_text", f"keys: {sorted(data)[:8]}")
        if not isinstance(text, str):
            return self.bad(path, line, "text_not_a_string", type(text).__name__)
        if not text.strip():
            return self.bad(path, line, "empty_text")
        if len(text) > MAX_RECORD_BYTES:  # Parquet and WARC records: characters, at most their UTF-8 bytes
            return self.bad(path, line, "record_too_large", f"{len(text):,} characters")
        return self.get_document_from_dict(data, path, line)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        if self.files is not None:
            shard = self.files[rank::world_size]
        else:
            shard = self.data_folder.get_shard(rank, world_size, recursive=self.recursive, glob_pattern=self.glob_pattern)
        for path in shard or []:
            self.stat_update("input_files")
            for doc in self.read_file(path):
                self.update_doc_stats(doc)
                yield doc


class SafeJsonlReader(_SafeReader):
    name = "🐿 JSONL (checked)"

    def read_file(self, filepath: str) -> DocumentsPipeline:
        import orjson

        line_no = 0
        try:
            with self.data_folder.open(filepath, "rb") as f:
                for line_no, raw in enumerate(iter_lines(f, filepath), start=1):
                    if not raw.strip():
                        continue
                    if len(raw) > MAX_RECORD_BYTES:
                        self.bad(filepath, line_no, "record_too_large", f"{len(raw):,} bytes")
                        continue
                    try:
                        raw.decode("utf-8")
                    except UnicodeDecodeError as e:
                        self.bad(filepath, line_no, "invalid_utf8", str(e))
                        continue
                    try:
                        data = orjson.loads(raw)
                    except orjson.JSONDecodeError as e:
                        self.bad(filepath, line_no, "malformed_json", str(e))
                        continue
                    if (doc := self.record(data, filepath, line_no)) is not None:
                        yield doc
        except (OSError, EOFError, zlib.error) as e:
            self.bad(filepath, f"after line {line_no}", "truncated_or_unreadable", f"{type(e).__name__}: {e}")
        except Exception as e:  # zstandard.ZstdError and friends: a damaged compressed stream
            if isinstance(e, BadInput) or type(e).__module__.split(".")[0] not in ("zstandard", "_zstd"):
                raise
            self.bad(filepath, f"after line {line_no}", "truncated_or_unreadable", f"{type(e).__name__}: {e}")


class SafeParquetReader(_SafeReader):
    name = "📒 Parquet (checked)"

    def read_file(self, filepath: str) -> DocumentsPipeline:
        import pyarrow.parquet as pq

        row = 0
        try:
            with self.data_folder.open(filepath, "rb") as f:
                pf = pq.ParquetFile(f)
                for batch in pf.iter_batches(batch_size=1000):
                    for data in batch.to_pylist():
                        row += 1
                        if (doc := self.record(data, filepath, row)) is not None:
                            yield doc
        except (OSError, ValueError) as e:  # pyarrow.ArrowInvalid is a ValueError
            if isinstance(e, BadInput):
                raise
            self.bad(filepath, f"row {row}", "truncated_or_unreadable", f"{type(e).__name__}: {e}")


def html_to_text(html: bytes | str) -> str | None:
    """Main text of an HTML page (trafilatura: boilerplate, menus and footers removed)."""
    import trafilatura

    return trafilatura.extract(html, include_comments=False, include_tables=False, favor_precision=True)


class SafeWarcReader(_SafeReader):
    """HTML responses of a WARC file -> main text (trafilatura); URL and date kept as metadata."""

    name = "🕷 WARC (checked)"

    def __init__(self, data_folder: Any, *, extract: Callable[[bytes], str | None] = html_to_text, **kwargs: Any):
        super().__init__(data_folder, **kwargs)
        self.extract = extract

    def read_file(self, filepath: str) -> DocumentsPipeline:
        from warcio.archiveiterator import ArchiveIterator
        from warcio.exceptions import ArchiveLoadFailed

        n = 0
        try:
            with self.data_folder.open(filepath, "rb") as f:
                it = last = None
                for n, rec in enumerate(it := ArchiveIterator(f), start=1):
                    last = rec
                    if (doc := self._document(rec, filepath, n)) is not None:
                        yield doc
                _check_warc_end(it, last, self.data_folder.size(filepath))
        except (OSError, EOFError, zlib.error, ArchiveLoadFailed, ValueError, AttributeError) as e:
            # warcio reads a cut file as a clean end, or fails inside its header parser (AttributeError)
            self.bad(filepath, f"after record {n}", "truncated_or_unreadable", f"{type(e).__name__}: {e}")

    def _document(self, rec: Any, filepath: str, n: int) -> Any:
        if rec.rec_type != "response" or not rec.http_headers:
            return None
        if "html" not in (rec.http_headers.get_header("Content-Type") or ""):
            return None
        url = rec.rec_headers.get_header("WARC-Target-URI")
        text = self.extract(rec.content_stream().read())
        if not text:  # a page of menus only is not bad input: counted, not logged
            self.stat_update("warc_no_main_text")
            return None
        data = {self.text_key: text, "id": rec.rec_headers.get_header("WARC-Record-ID") or f"{filepath}/{n}",
                "url": url, "date": rec.rec_headers.get_header("WARC-Date")}
        return self.record(data, filepath, f"record {n} {url}")


def _check_warc_end(it: Any, last: Any, size: int) -> None:
    """warcio ends a truncated file without an error: the last record then lacks its Content-Length
    or its bytes, or the file has bytes after the last record it parsed."""
    if last is not None and (last.length is None or getattr(last.raw_stream, "limit", 0) > 0):
        raise EOFError("the last WARC record is incomplete (truncated file)")
    if it is not None and it.offset < size:
        raise EOFError(f"{size - it.offset} bytes after the last complete WARC record (truncated file)")
