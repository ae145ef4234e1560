"""The `data:` section: sources, language ID, filters, quality, near-dedup, executors."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from occiforge.recipe.base import Strict, _check_langs


class SourceConfig(Strict):
    """Where documents come from: a folder, the built-in demo corpus, or a HF dataset (`hf:<id>`).

    A folder holds one file per language (`<lang>.jsonl`, `.jsonl.gz`, `.jsonl.zst`, `.parquet`,
    `.warc.gz`), or, with `glob`, any files, labelled by `lang_key` or by language ID.
    """

    name: str
    path: str
    format: Literal["auto", "jsonl", "parquet", "warc"] = "auto"  # auto: from the file name
    glob: str | None = None  # e.g. "crawl/*.warc.gz": files of any language, labelled by LID
    text_key: str = "text"
    lang_key: str = "lang"
    config: str | None = None  # HF datasets only: the config (FineWeb-2 "pol_Latn", CulturaX "pl")
    split: str = "train"  # HF datasets only
    languages: list[str] | None = None  # default: the run's languages; other labels are dropped
    priority: int = Field(1, ge=1, le=65535)  # dedup keeps the copy with the highest priority

    _v = field_validator("languages")(_check_langs)


class LidConfig(Strict):
    """Language ID: assigns the label where a document has none, checks it where it has one."""

    enabled: bool = True
    threshold: float = Field(0.5, ge=0.0, le=1.0)  # minimum probability of the (labelled) language
    backend: Literal["py3langid", "fasttext"] = "py3langid"  # fasttext: GlotLID / lid.176 from model_path
    model_path: str | None = None  # a local fastText model file (backend: fasttext)

    @model_validator(mode="after")
    def _model(self) -> LidConfig:
        if self.backend == "fasttext" and not self.model_path:
            raise ValueError("backend: fasttext needs model_path (a local GlotLID or lid.176 .bin file)")
        return self


class FilterConfig(Strict):
    min_chars: int = Field(50, ge=0)
    max_chars: int | None = Field(None, ge=1)


class QualityConfig(Strict):
    """Per-language quality steps (thresholds and stop words: occiforge/data/quality_table.py)."""

    normalize: bool = True  # Unicode NFC and whitespace clean-up
    cookie_lines: bool = True  # remove cookie/policy boilerplate lines (per-language phrases)
    gopher: bool = True  # Gopher quality and repetition
    c4: bool = False  # C4 line rules (terminal punctuation, javascript, policy, lorem ipsum)
    fineweb: bool = False  # FineWeb line rules (punctuation, short lines, duplicated lines)
    pii: bool = True  # mask e-mail addresses, IP addresses and phone numbers


class NearDedupConfig(Strict):
    """MinHash LSH near-dedup per language, as datatrove's passes do it (signatures, buckets, clusters)."""

    enabled: bool = True
    n_grams: int = Field(5, ge=1)
    # 25 bands x 4 rows: recall 0.973 at precision 1.0 on injected near-copies, no cross-split pair left
    # (14 x 8: recall 0.756); measured in benchmarks/bench_dedup.py, see BENCHMARKS.md
    num_buckets: int = Field(25, ge=1)
    hashes_per_bucket: int = Field(4, ge=1)


class ExecutorConfig(Strict):
    """How datatrove runs the data pipeline: in-process/local workers, Slurm or Ray."""

    kind: Literal["local", "slurm", "ray"] = "local"
    tasks: int = Field(1, ge=1)
    workers: int = Field(1, ge=1)
    partition: str | None = None  # slurm
    time: str = "24:00:00"  # slurm
    cpus_per_task: int = Field(1, ge=1)
    mem_per_cpu_gb: float = Field(2.0, gt=0)


class DataConfig(Strict):
    sources: list[SourceConfig] = Field(min_length=1)
    lid: LidConfig = LidConfig()
    filters: FilterConfig = FilterConfig()
    quality: QualityConfig = QualityConfig()
    exact_dedup: bool = True  # global, whatever the number of tasks
    near_dedup: NearDedupConfig = NearDedupConfig()
    heldout_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # drawn after dedup, by near-duplicate cluster
    on_error: Literal["skip", "fail"] = "skip"  # bad input (malformed line, truncated file): count or stop
    write_dropped: bool = False  # dropped documents -> data/dropped/<reason>/ with their reason
    executor: ExecutorConfig = ExecutorConfig()
