"""Readers: the only data steps that touch input storage.

Every document leaves a reader with `metadata["language"]` (the label from the source, or None
where it has none: language ID assigns it), `metadata["source"]` and `metadata["priority"]`,
whatever the source format, and with `metadata["split"]` where the record names one.
Local files go through the checked readers of `formats.py`; `hf:<id>` through datatrove's
streaming HF reader with a config and split, and one line (exit 2) when it needs a network
that is not there.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers import HuggingFaceDatasetReader

from occiforge.data.formats import (
    BadInput,
    SafeJsonlReader,
    SafeParquetReader,
    SafeWarcReader,
)
from occiforge.errors import UserError
from occiforge.lm import check_hub_dataset
from occiforge.recipe import BUILTIN_DEMO, SourceConfig

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
SUFFIXES = {".jsonl": "jsonl", ".jsonl.gz": "jsonl", ".jsonl.zst": "jsonl", ".parquet": "parquet",
            ".warc": "warc", ".warc.gz": "warc"}
READERS = {"jsonl": SafeJsonlReader, "parquet": SafeParquetReader, "warc": SafeWarcReader}


def source_folder(src: SourceConfig) -> Path:
    return DEMO_DIR / "corpus" if src.path == BUILTIN_DEMO else Path(src.path)


def file_format(src: SourceConfig, name: str) -> str:
    if src.format != "auto":
        return src.format
    for suffix, fmt in SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    raise UserError(f"data.sources[{src.name}]: cannot tell the format of {name!r}; set format: jsonl|parquet|warc")


def language_file(src: SourceConfig, lang: str) -> Path | None:
    """The one file of a language in a per-language folder (`<lang>.jsonl`, `.parquet`, ...)."""
    folder = source_folder(src)
    found = [folder / f"{lang}{s}" for s in SUFFIXES if (folder / f"{lang}{s}").is_file()]
    return found[0] if found else None


def source_files(src: SourceConfig, langs: list[str]) -> list[Path]:
    """Every local input file of a source (for the fingerprint and the preflight check)."""
    folder = source_folder(src)
    if src.glob:
        return sorted(p for p in folder.glob(src.glob) if p.is_file())
    return [p for lang in langs if (p := language_file(src, lang)) is not None]


def check_source(src: SourceConfig, langs: list[str]) -> None:
    """Fail before any work starts if a local source lacks its files, or a hub source its network."""
    if src.path.startswith("hf:"):
        check_hub_dataset(src.path[3:], f"data.sources[{src.name}]")
        return
    folder = source_folder(src)
    if not folder.is_dir():
        raise UserError(f"data.sources[{src.name}]: folder not found: {folder}")
    if src.glob:
        if not source_files(src, langs):
            raise UserError(f"data.sources[{src.name}]: no file matches {src.glob!r} in {folder}")
        return
    missing = [lang for lang in langs if language_file(src, lang) is None]
    if missing:
        raise UserError(f"data.sources[{src.name}]: no {missing[0]}.jsonl in {folder} (nor .jsonl.gz/.jsonl.zst/.parquet/.warc.gz;"
                        f" missing: {', '.join(missing)})")


def _adapt(reader: Any, data: dict, path: str, id_in_file: int | str, *, src: SourceConfig, lang: str | None,
           lang_from_file: bool = False) -> dict:
    if lang_from_file:  # a per-language folder: `de.jsonl.gz` holds German
        lang = Path(str(path)).name.split(".")[0]
    label = data.pop(src.lang_key, None) or lang
    text = data.pop(reader.text_key, "")
    doc_id = data.pop(reader.id_key, None) or f"{Path(str(path)).name}/{id_in_file}"
    meta = {"language": label, "source": src.name, "priority": src.priority}
    if data.get("split") in ("train", "heldout"):  # a split given by the source wins over hashing
        meta["split"] = data["split"]
    for key in ("url", "date"):
        if data.get(key):
            meta[key] = data[key]
    return {"text": text, "id": f"{src.name}/{doc_id}", "metadata": meta}


class HubReader(HuggingFaceDatasetReader):
    """datatrove's streaming HF reader; a dataset it cannot load (no network) is one line."""

    def run(self, data: Any = None, rank: int = 0, world_size: int = 1) -> Any:
        try:
            yield from super().run(data, rank, world_size)
        except (ConnectionError, OSError) as e:
            raise BadInput(f"hf:{self.dataset}: cannot be loaded ({type(e).__name__}: {str(e)[:200]}); "
                           "it needs the network or a local copy") from None


def build_readers(src: SourceConfig, langs: list[str], on_error: str = "skip") -> list[PipelineStep]:
    """Readers of one source: one per language file, one over a glob, or one for a HF dataset."""
    if src.path.startswith("hf:"):
        # a one-language dataset needs no language column: its label is that language
        adapter = partial(_adapt, src=src, lang=langs[0] if len(langs) == 1 else None)
        options: dict[str, Any] = {"split": src.split}
        if src.config:
            options["name"] = src.config
        return [HubReader(src.path[3:], dataset_options=options, streaming=True, adapter=adapter, text_key=src.text_key)]
    folder = str(source_folder(src))
    common: dict[str, Any] = {"recursive": False, "text_key": src.text_key, "add_file_path": False, "on_error": on_error}
    if src.glob:
        fmt = file_format(src, src.glob)
        return [READERS[fmt](folder, glob_pattern=src.glob, adapter=partial(_adapt, src=src, lang=None),
                             **{**common, "recursive": "**" in src.glob})]
    # one reader per format over all language files, so the files are spread over the tasks
    by_format: dict[str, list[str]] = {}
    for lang in langs:
        path = language_file(src, lang)
        name = path.name if path else f"{lang}.jsonl"
        by_format.setdefault(file_format(src, name), []).append(name)
    adapter = partial(_adapt, src=src, lang=None, lang_from_file=True)
    return [READERS[fmt](folder, files=names, adapter=adapter, **common) for fmt, names in by_format.items()]
