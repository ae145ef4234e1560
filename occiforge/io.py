"""Reading what the data and tokens stages wrote: curated documents and token streams.

Every stage that reads text or tokens goes through here, so the on-disk layout is known once:
`data/<lang>/<split>/*.jsonl.gz` (one JSON document per line) and `tokens/<lang>/train.bin`
with its `meta.json` (dtype and counts).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def shard_paths(data_dir: Path, lang: str, split: str) -> list[Path]:
    return sorted((data_dir / lang / split).glob("*.jsonl*"))


def iter_jsonl_at(path: Path) -> Iterator[tuple[str, Any]]:
    """("file:line", record) per non-blank line of a JSONL file, plain or gzipped; an unreadable file,
    a line that is not UTF-8 or not JSON is a UserError naming them."""
    from occiforge.errors import UserError

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        fh = opener(path, "rb")  # bytes: each line decoded on its own, so a bad byte names its line
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    n = 0
    with fh:
        try:
            for n, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8")
                    if not line.strip():
                        continue
                    rec = json.loads(line)
                except UnicodeDecodeError as e:
                    raise UserError(f"{path}:{n}: not UTF-8 ({e.reason} at byte {e.start})") from None
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}:{n}: invalid JSON ({e.msg})") from None
                yield f"{path}:{n}", rec
        except (OSError, EOFError) as e:  # a cut-off or broken gzip
            raise UserError(f"{path}: cannot read after line {n} ({str(e).splitlines()[0][:120]})") from None


def load_hf_dataset(name: str, split: str, config: str | None = None) -> Any:
    """One split of a HF dataset (downloaded, or read from the HF cache); a one-line UserError if the
    `datasets` package is missing or the dataset cannot be had."""
    from occiforge.errors import UserError

    try:
        import datasets  # heavy: only where a hub dataset is used
    except ImportError:
        raise UserError(f"hf:{name} needs the datasets package (pip install datasets)") from None
    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as e:  # noqa: BLE001 - any hub/cache failure is a one-line "cannot load"
        where = f"{config}, {split}" if config else split
        raise UserError(f"hf:{name} ({where}): cannot load: {str(e).splitlines()[0][:200]}") from None


def iter_jsonl(path: Path) -> Iterator[Any]:
    """Records of a JSONL file, plain or gzipped."""
    return (rec for _, rec in iter_jsonl_at(path))


def iter_records(data_dir: Path, lang: str, split: str) -> Iterator[dict[str, Any]]:
    """The curated documents of one language and split, in shard order."""
    for path in shard_paths(data_dir, lang, split):
        yield from iter_jsonl(path)


def iter_texts(data_dir: Path, lang: str, split: str) -> Iterator[str]:
    """Texts of the curated documents of one language and split, in shard order."""
    return (record["text"] for record in iter_records(data_dir, lang, split))


TOKENS_FILE, TOKENS_META = "train.bin", "meta.json"
DOC_INDEX = "docs.npy"  # int64 offsets of the documents in TOKENS_FILE: n_documents + 1 values
TARGETS_FILE = "targets.bin"  # uint8 per token, 1 where it is a training target (conversations: assistant turns)


def open_tokens(tokens_dir: Path, lang: str) -> Any:
    """One language's token stream as a read-only numpy memmap."""
    import numpy as np

    meta = json.loads((tokens_dir / lang / TOKENS_META).read_text())
    return np.memmap(tokens_dir / lang / TOKENS_FILE, dtype=meta["dtype"], mode="r")


def write_token_docs(folder: Path, docs: Any, dtype: Any, targets: Any = None) -> dict[str, int]:
    """Write documents (lists of ids) as one token folder: ids back to back, their offsets, and
    (for conversations) a target mask per token. Returns the counts written to meta.json."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    offsets, n = [0], 0
    with open(folder / TOKENS_FILE, "wb") as f, open(folder / TARGETS_FILE, "wb") if targets is not None else _null() as g:
        for i, ids in enumerate(docs):
            f.write(np.asarray(ids, dtype=dtype).tobytes())
            if g is not None:
                g.write(np.asarray(targets[i], dtype=np.uint8).tobytes())
            n += len(ids)
            offsets.append(n)
    np.save(folder / DOC_INDEX, np.asarray(offsets, dtype=np.int64))
    meta = {"dtype": np.dtype(dtype).name, "tokens": n, "documents": len(offsets) - 1}
    (folder / TOKENS_META).write_text(json.dumps(meta))
    return meta


def _null() -> Any:
    import contextlib

    return contextlib.nullcontext(None)


def open_token_docs(folder: Path) -> tuple[Any, Any, Any]:
    """(ids, document offsets, target mask or None) of a token folder, memory-mapped. Folders written
    before the document index existed count as one document."""
    import numpy as np

    meta = json.loads((folder / TOKENS_META).read_text())
    ids = np.memmap(folder / TOKENS_FILE, dtype=meta["dtype"], mode="r") if meta["tokens"] else np.zeros(0, meta["dtype"])
    index = folder / DOC_INDEX
    offsets = np.load(index) if index.is_file() else np.asarray([0, len(ids)], dtype=np.int64)
    targets = np.memmap(folder / TARGETS_FILE, dtype=np.uint8, mode="r") if (folder / TARGETS_FILE).is_file() and meta["tokens"] else None
    return ids, offsets, targets
