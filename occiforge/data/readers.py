"""Readers: the only data steps that touch input storage.

Every document leaves a reader with `metadata["language"]` (the label from the source),
`metadata["source"]` and `metadata["priority"]`, whatever the source format, and with
`metadata["split"]` where the record names one (`"split": "train"` or `"heldout"`).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers import HuggingFaceDatasetReader, JsonlReader

from occiforge.errors import UserError
from occiforge.recipe import BUILTIN_DEMO, SourceConfig

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"


def source_folder(src: SourceConfig) -> Path:
    return DEMO_DIR / "corpus" if src.path == BUILTIN_DEMO else Path(src.path)


def check_source(src: SourceConfig, langs: list[str]) -> None:
    """Fail before any work starts if a local source lacks a file for a language it must serve."""
    if src.path.startswith("hf:"):
        return
    folder = source_folder(src)
    if not folder.is_dir():
        raise UserError(f"data.sources[{src.name}]: folder not found: {folder}")
    missing = [lang for lang in langs if not (folder / f"{lang}.jsonl").is_file()]
    if missing:
        raise UserError(f"data.sources[{src.name}]: no {missing[0]}.jsonl in {folder} (missing: {', '.join(missing)})")


def _adapt(reader: Any, data: dict, path: str, id_in_file: int | str, *, src: SourceConfig, lang: str | None) -> dict:
    label = data.pop(src.lang_key, None) or lang
    text = data.pop(reader.text_key, "")
    doc_id = data.pop(reader.id_key, None) or f"{path}/{id_in_file}"
    meta = {"language": label, "source": src.name, "priority": src.priority}
    if data.get("split") in ("train", "heldout"):  # a split given by the source wins over hashing
        meta["split"] = data["split"]
    return {"text": text, "id": f"{src.name}/{doc_id}", "metadata": meta}


def build_readers(src: SourceConfig, langs: list[str]) -> list[PipelineStep]:
    """One reader per language file (local) or one reader for a HF dataset filtered by language."""
    if src.path.startswith("hf:"):
        # a one-language dataset needs no language column: its label is that language
        adapter = partial(_adapt, src=src, lang=langs[0] if len(langs) == 1 else None)
        return [
            HuggingFaceDatasetReader(
                src.path[3:],
                dataset_options={"split": src.split},
                streaming=True,
                adapter=adapter,
                text_key=src.text_key,
            )
        ]
    folder = source_folder(src)
    return [
        JsonlReader(
            str(folder),
            glob_pattern=f"{lang}.jsonl",
            recursive=False,
            adapter=partial(_adapt, src=src, lang=lang),
            text_key=src.text_key,
            add_file_path=False,
        )
        for lang in langs
    ]
