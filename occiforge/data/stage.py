"""The data stage: read, normalise, identify language, filter, dedup (exact and near), split, write.

Four datatrove passes, chained with `depends=` so the local, Slurm and Ray executors run them
in order: (1) `curate` reads every source and runs the per-document steps, writing curated
documents and dedup signatures; (2) `buckets`, datatrove's MinHash LSH bucket pass; (3)
`clusters`, one task, global exact groups + near-duplicate components, keeping the copy of the
highest-priority source; (4) `split` drops the duplicates, draws the held-out split (after
dedup, by cluster) and writes `data/<lang>/{train,heldout}/<rank>.jsonl.gz`. With neither
dedup on, pass 1 writes the final layout itself.

Work happens in `.work/data-<fingerprint>/`, where datatrove's completion markers let a killed
run skip finished tasks; the result is moved into place only when every pass is done. Figures:
`data/stats.json` (per language: read, kept, dropped by reason, docs/bytes/chars per split),
`data/bad_input.json` (per input file and reason).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from occiforge import artifacts, languages
from occiforge.context import Context, Stage
from occiforge.errors import UserError

PASSES = ("curate", "buckets", "clusters", "split")


def _source_signature(ctx: Context) -> list[Any]:
    """Name, size and mtime of every input file: cheap, and changes when the input changes."""
    from occiforge.data.readers import source_files

    sig: list[Any] = []
    for src in ctx.recipe.data.sources:
        if src.path.startswith("hf:"):
            sig.append([src.path, src.config, src.split])
            continue
        for p in source_files(src, src.languages or ctx.recipe.languages):
            st = p.stat()
            sig.append([src.name, p.name, st.st_size, int(st.st_mtime)])
    return sig


def fingerprint(ctx: Context) -> str:
    r = ctx.recipe
    return artifacts.fingerprint("data/2", r.languages, r.data.model_dump(mode="json"), _source_signature(ctx))


def _dropped_writer(ctx: Context, work: Path) -> Any:
    if not ctx.recipe.data.write_dropped:
        return None
    from datatrove.pipeline.writers import JsonlWriter

    return JsonlWriter(str(work / "dropped"), output_filename="${filter_reason}/${language}/${rank}.jsonl.gz")


def document_steps(ctx: Context, work: Path) -> list[Any]:
    """Readers and the per-document steps of pass 1, in order."""
    from occiforge.data import quality as q
    from occiforge.data.readers import build_readers
    from occiforge.data.steps import (
        LanguageIdFilter,
        LengthFilter,
        SourceLanguageFilter,
    )

    cfg, langs = ctx.recipe.data, ctx.recipe.languages
    steps: list[Any] = []
    allowed = {src.name: src.languages or langs for src in cfg.sources}
    for src in sorted(cfg.sources, key=lambda s: -s.priority):
        steps += build_readers(src, allowed[src.name], cfg.on_error)
    if cfg.quality.normalize:
        steps.append(q.Normalizer())
    if cfg.lid.enabled:
        steps.append(LanguageIdFilter(cfg.lid.threshold, languages.all_codes(), cfg.lid.backend, cfg.lid.model_path))
    steps.append(SourceLanguageFilter(allowed))
    if cfg.quality.cookie_lines:
        steps.append(q.CookieLineRemover())
    steps.append(LengthFilter(cfg.filters.min_chars, cfg.filters.max_chars))
    for kind, on in (("gopher_quality", cfg.quality.gopher), ("gopher_repetition", cfg.quality.gopher),
                     ("c4", cfg.quality.c4), ("fineweb", cfg.quality.fineweb)):
        if on:
            steps.append(q.PerLanguage(kind))
    if cfg.quality.pii:
        steps.append(q.PIIMasker())
    return steps


def build_passes(ctx: Context, work: Path) -> list[tuple[str, list[Any], int]]:
    """(name, pipeline, tasks) of each pass, in order."""
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets
    from datatrove.pipeline.writers import JsonlWriter

    from occiforge.data.dedup import DedupClusters, DedupFilter, DedupSignatures
    from occiforge.data.formats import SafeJsonlReader
    from occiforge.data.steps import CountingFilter, SplitAnnotator

    cfg = ctx.recipe.data
    tasks, nd = cfg.executor.tasks, cfg.near_dedup
    steps = document_steps(ctx, work)
    final = JsonlWriter(str(work / "output"), output_filename="${language}/${split}/${rank}.jsonl.gz")
    split = SplitAnnotator(cfg.heldout_fraction)
    passes: list[tuple[str, list[Any], int]]
    if not (cfg.exact_dedup or nd.enabled):
        passes = [("curate", [*steps, split, final], tasks)]
    else:
        mh = MinhashConfig(n_grams=nd.n_grams, num_buckets=nd.num_buckets, hashes_per_bucket=nd.hashes_per_bucket)
        sigs, dups, marks = work / "sigs", work / "dups", work / "marks"
        curated = JsonlWriter(str(work / "curated"), output_filename="${rank}.jsonl.gz")
        sig_step = DedupSignatures(str(sigs), mh, languages.all_codes(), near=nd.enabled)
        passes = [("curate", [*steps, sig_step, curated], tasks)]
        if nd.enabled:
            passes.append(("buckets", [MinhashDedupBuckets(str(sigs), str(dups), config=mh)], nd.num_buckets))
        passes.append(("clusters", [DedupClusters(str(sigs), str(dups) if nd.enabled else None, str(marks), cfg.exact_dedup)], 1))
        reread = SafeJsonlReader(str(work / "curated"), glob_pattern="*.jsonl.gz", recursive=False, add_file_path=False)
        passes.append(("split", [reread, DedupFilter(str(marks)), split, final], tasks))
    for _, pipeline, _ in passes:  # one writer per filter: each filter opens and closes its own
        for step in pipeline:
            if isinstance(step, CountingFilter):
                step.exclusion_writer = _dropped_writer(ctx, work)
    return passes


def make_executor(ctx: Context, pipeline: list[Any], logging_dir: Path, tasks: int | None = None, depends: Any = None) -> Any:
    ex = ctx.recipe.data.executor
    tasks = tasks or ex.tasks
    workers = min(ex.workers, tasks)
    if ex.kind == "local":
        from datatrove.executor import LocalPipelineExecutor

        return LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(logging_dir), depends=depends)
    if ex.kind == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        return SlurmPipelineExecutor(
            pipeline, tasks=tasks, workers=workers, logging_dir=str(logging_dir), depends=depends,
            partition=ex.partition, time=ex.time, cpus_per_task=ex.cpus_per_task,
            mem_per_cpu_gb=ex.mem_per_cpu_gb, job_name=f"occiforge-{ctx.recipe.name}-{logging_dir.name}",
        )
    from datatrove.executor.ray import RayPipelineExecutor

    return RayPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=str(logging_dir), depends=depends,
                               cpus_per_task=ex.cpus_per_task, mem_per_cpu_gb=ex.mem_per_cpu_gb)


def _quiet_loguru() -> None:
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")


@contextlib.contextmanager
def _stderr_to(path: Path) -> Any:
    """datatrove logs each task to stderr and to its log files; keep the files, not the noise. Worker
    processes write to file descriptor 2 itself, so that is what is redirected (to `path`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as f, contextlib.redirect_stderr(io.StringIO()):
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _run_passes(ctx: Context, passes: list[tuple[str, list[Any], int]], logs: Path) -> None:
    from occiforge.data.formats import BadInput

    executor = None
    for name, pipeline, tasks in passes:
        executor = make_executor(ctx, pipeline, logs / name, tasks, depends=executor)
    # datatrove logs each task to stderr and to logs/; keep the log files, not the noise
    try:
        with ctx.status("data: reading, identifying, filtering, deduplicating…"), _stderr_to(logs / "stderr.log"):
            _quiet_loguru()  # a sink on the redirected stderr: datatrove's main-process chatter goes there
            executor.run()
    except Exception as e:
        msg = str(e).strip().splitlines()
        if isinstance(e, BadInput) or "BadInput" in type(e).__name__ or any("bad input at" in m or "BadInput" in m for m in msg):
            line = next((m for m in msg if "bad input at" in m or "cannot be loaded" in m), msg[-1] if msg else type(e).__name__)
            raise UserError(f"data: {line.split('BadInput: ')[-1]}") from None
        raise
    finally:
        _quiet_loguru()
    for name, _, tasks in passes:
        done = len(list((logs / name / "completions").glob("*"))) if (logs / name / "completions").is_dir() else 0
        if done < tasks:
            raise UserError(f"data: pass '{name}': {done}/{tasks} tasks finished (logs in {logs / name}); rerun when they are done")


def run(ctx: Context, fp: str) -> dict[str, Any]:
    from occiforge.data.stats import fold_stats

    langs = ctx.recipe.languages
    work = ctx.run_dir / ".work" / f"data-{fp}"
    out, logs = work / "output", work / "logs"
    passes = build_passes(ctx, work)
    _run_passes(ctx, passes, logs)
    per_lang, bad, others = fold_stats([logs / name / "stats.json" for name, _, _ in passes], langs)
    empty = [lang for lang in langs if per_lang[lang].get("train_docs", 0) == 0]
    if empty:
        raise UserError(f"data: no documents left for {', '.join(empty)} after filtering (see {logs})")
    artifacts.write_json_atomic(out / "stats.json", per_lang)
    artifacts.write_json_atomic(out / "bad_input.json", bad)
    if (work / "dropped").is_dir():
        os.replace(work / "dropped", out / "dropped")
    final = ctx.stage_dir("data")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(logs, out / "logs")
    os.replace(out, final)
    shutil.rmtree(work, ignore_errors=True)
    for lang in langs:
        row = per_lang[lang]
        ctx.log(f"  {lang}: kept {row['kept']}/{row['read']} docs, dropped {dict(row['dropped']) or '-'}")
    if bad:
        ctx.log(f"  bad input skipped: {sum(sum(r.values()) for r in bad.values())} records in {len(bad)} files (data/bad_input.json)")
    return {"languages": langs, "per_language": per_lang, "bad_input": bad, "other_languages": others}


def preflight(ctx: Context) -> None:
    """Every local source has its files, every hub source its network, before any work starts."""
    from occiforge.data.readers import check_source

    for src in ctx.recipe.data.sources:
        check_source(src, src.languages or ctx.recipe.languages)


STAGE = Stage(name="data", folder="data", reads=(), fingerprint=fingerprint, run=run, preflight=preflight)
