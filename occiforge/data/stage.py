"""The data stage: read sources, identify language, filter, dedup, split, write shards.

Output: `data/<lang>/{train,heldout}/<rank>.jsonl.gz` and `data/stats.json` (per language:
documents read, dropped by reason, kept, bytes). Work happens in `.work/data-<fingerprint>/`,
where datatrove's completion markers let a killed run skip finished tasks; the result is
moved into place only when every task is done.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

from occiforge import artifacts, languages
from occiforge.data.readers import build_readers, source_folder
from occiforge.data.steps import ExactDedupFilter, LanguageIdFilter, LanguageLabelFilter, LengthFilter, SplitAnnotator
from occiforge.errors import UserError

SPLITS = ("train", "heldout")


def _source_signature(ctx: Any) -> list[Any]:
    """Name, size and mtime of every input file: cheap, and changes when the input changes."""
    sig: list[Any] = []
    for src in ctx.recipe.data.sources:
        if src.path.startswith("hf:"):
            sig.append(src.path)
            continue
        for lang in src.languages or ctx.recipe.languages:
            p = source_folder(src) / f"{lang}.jsonl"
            st = p.stat()
            sig.append([src.name, lang, st.st_size, int(st.st_mtime)])
    return sig


def fingerprint(ctx: Any) -> str:
    r = ctx.recipe
    return artifacts.fingerprint("data/1", r.languages, r.data.model_dump(mode="json"), _source_signature(ctx))


def build_pipeline(ctx: Any, out_dir: Path) -> list[Any]:
    from datatrove.pipeline.writers import JsonlWriter

    cfg = ctx.recipe.data
    steps: list[Any] = []
    for src in sorted(cfg.sources, key=lambda s: -s.priority):
        steps += build_readers(src, src.languages or ctx.recipe.languages)
    steps.append(LanguageLabelFilter(ctx.recipe.languages))
    steps.append(LengthFilter(cfg.filters.min_chars, cfg.filters.max_chars))
    if cfg.lid.enabled:
        steps.append(LanguageIdFilter(cfg.lid.threshold, languages.all_codes()))
    if cfg.exact_dedup:
        steps.append(ExactDedupFilter())
    steps.append(SplitAnnotator(cfg.heldout_fraction))
    steps.append(JsonlWriter(str(out_dir), output_filename="${language}/${split}/${rank}.jsonl.gz"))
    return steps


def make_executor(ctx: Any, pipeline: list[Any], logging_dir: Path) -> Any:
    ex = ctx.recipe.data.executor
    if ex.kind == "local":
        from datatrove.executor import LocalPipelineExecutor

        return LocalPipelineExecutor(pipeline, tasks=ex.tasks, workers=ex.workers, logging_dir=str(logging_dir))
    if ex.kind == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        return SlurmPipelineExecutor(
            pipeline, tasks=ex.tasks, workers=ex.workers, logging_dir=str(logging_dir),
            partition=ex.partition, time=ex.time, cpus_per_task=ex.cpus_per_task,
            mem_per_cpu_gb=ex.mem_per_cpu_gb, job_name=f"occiforge-{ctx.recipe.name}",
        )
    from datatrove.executor.ray import RayPipelineExecutor

    return RayPipelineExecutor(pipeline, tasks=ex.tasks, workers=ex.workers, logging_dir=str(logging_dir))


def _per_language(stats_file: Path, langs: list[str]) -> dict[str, dict[str, int]]:
    """Fold datatrove's merged stats (`<lang>/<what>` counters) into a per-language table."""
    table: dict[str, dict[str, int]] = {lang: defaultdict(int) for lang in langs}
    for step in json.loads(stats_file.read_text()):
        for key, value in step.get("stats", {}).items():
            lang, _, what = key.partition("/")
            if what and "/" not in what and lang in table:
                table[lang][what] += int(value["total"] if isinstance(value, dict) else value)
    out = {}
    for lang, row in table.items():
        dropped = {k.removeprefix("dropped_"): v for k, v in row.items() if k.startswith("dropped_")}
        kept = sum(row.get(f"{s}_docs", 0) for s in SPLITS)
        out[lang] = {"read": kept + sum(dropped.values()), "kept": kept, "dropped": dropped}
        out[lang].update({k: v for k, v in row.items() if not k.startswith("dropped_")})
    return out


def run(ctx: Any, fp: str) -> dict[str, Any]:
    langs = ctx.recipe.languages
    work = ctx.run_dir / ".work" / f"data-{fp}"
    out, logs = work / "output", work / "logs"
    executor = make_executor(ctx, build_pipeline(ctx, out), logs)
    # datatrove logs each task to stderr and to logs/; keep the log files, not the noise
    with ctx.status("data: reading, identifying, filtering…"), contextlib.redirect_stderr(io.StringIO()):
        executor.run()
    done = len(list((logs / "completions").glob("*"))) if (logs / "completions").is_dir() else 0
    if done < ctx.recipe.data.executor.tasks:
        raise UserError(f"data: {done}/{ctx.recipe.data.executor.tasks} tasks finished (logs in {logs}); rerun when they are done")
    per_lang = _per_language(logs / "stats.json", langs)
    empty = [lang for lang in langs if per_lang[lang].get("train_docs", 0) == 0]
    if empty:
        raise UserError(f"data: no documents left for {', '.join(empty)} after filtering (see {logs / 'stats.json'})")
    artifacts.write_json_atomic(out / "stats.json", per_lang)
    final = ctx.stage_dir("data")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(logs, out / "logs")
    os.replace(out, final)
    shutil.rmtree(work, ignore_errors=True)
    for lang in langs:
        row = per_lang[lang]
        ctx.log(f"  {lang}: kept {row['kept']}/{row['read']} docs, dropped {dict(row['dropped']) or '-'}")
    return {"languages": langs, "per_language": per_lang}


def shard_paths(data_dir: Path, lang: str, split: str) -> list[Path]:
    return sorted((data_dir / lang / split).glob("*.jsonl*"))


def iter_texts(data_dir: Path, lang: str, split: str) -> Any:
    """Texts of the curated documents of one language and split, in shard order."""
    import gzip

    for path in shard_paths(data_dir, lang, split):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)["text"]

