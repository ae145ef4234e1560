"""Whole-chain curation throughput: occiforge's pass 1 (read, normalise, LID, source languages,
cookie lines, length, per-language Gopher quality + repetition, PII, MinHash signatures, write)
against a datatrove pipeline of the same kind built from datatrove's own components (JsonlReader,
GopherQualityFilter, GopherRepetitionFilter, PIIFormatter, JsonlWriter, MinhashDedupSignature),
on ../shared/data/mono replicated to a given size. datatrove's Gopher quality filter runs with its
English defaults but without the English stop-word rule (it would drop ~95% of this multilingual
corpus and leave the rest of its pipeline idle); the number of documents written is printed.

Language ID is occiforge's `LanguageIdFilter` on both sides (py3langid): datatrove's
`LanguageFilter` downloads a fastText model at first use, and this machine has no network.
MinHash on both sides with `hash_fc="sha1"` (xxhash 4.1 refuses the `str` shingles datatrove
passes); occiforge's own default, xxhash on bytes, is a third row. Each side runs in its own
process, one task on one worker (one core), the sides alternating; MB/s is input MB over wall
time and over CPU time (user + sys: the figure to trust on a shared machine), peak RSS is the
child's ru_maxrss. Medians of --reps runs.

    .venv/bin/python benchmarks/bench_curate.py [--mb 24 96] [--reps 3] [--sides occiforge,datatrove-sha1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
SIDES = ("occiforge", "occiforge-sha1", "datatrove-sha1")


def replicate(shared: Path, out: Path, mb: float) -> float:
    """Per-language files of the mono corpus repeated (ids made unique) to about `mb` MB in all."""
    files = sorted((shared / "mono").glob("*.jsonl"))
    total = sum(f.stat().st_size for f in files)
    reps = max(1, round(mb * 1e6 / total))
    out.mkdir(parents=True, exist_ok=True)
    for f in files:
        lines = f.read_text().splitlines()
        with open(out / f.name, "w") as fh:
            for r in range(reps):
                for line in lines:
                    d = json.loads(line)
                    fh.write(json.dumps({**d, "id": f"{d['id']}~{r}"}, ensure_ascii=False) + "\n")
    return sum(f.stat().st_size for f in out.glob("*.jsonl")) / 1e6


def _ours(corpus: Path, work: Path, sha1: bool) -> list:
    from occiforge import languages
    from occiforge.data.stage import build_passes
    from occiforge.recipe import validate_tree

    tree = {"name": "bench", "run_dir": str(work / "run"), "languages": languages.all_codes(), "models": {},
            "data": {"sources": [{"name": "mono", "path": str(corpus)}], "filters": {"min_chars": 1}}}
    ctx = SimpleNamespace(recipe=validate_tree(tree, "bench"))
    (_, pipeline, _), *_ = build_passes(ctx, work)
    if sha1:
        from datatrove.utils.hashes.sha1 import sha1_hash64

        sig = next(s for s in pipeline if type(s).__name__ == "DedupSignatures")
        sig._hash_func = lambda b: sha1_hash64(b.decode())  # datatrove's sha1 takes str; the step hashes bytes
    return pipeline


def _datatrove(corpus: Path, work: Path) -> list:
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    from occiforge import languages
    from occiforge.data.steps import LanguageIdFilter

    return [JsonlReader(str(corpus), glob_pattern="*.jsonl"), LanguageIdFilter(0.5, languages.all_codes()),
            GopherRepetitionFilter(), GopherQualityFilter(min_stop_words=None), PIIFormatter(),
            JsonlWriter(str(work / "out"), output_filename="${rank}.jsonl.gz"),
            MinhashDedupSignature(str(work / "sigs"), config=MinhashConfig(hash_config=HashConfig(hash_fc="sha1")))]


def child(side: str, corpus: Path, work: Path) -> None:
    from datatrove.executor import LocalPipelineExecutor

    pipeline = _datatrove(corpus, work) if side == "datatrove-sha1" else _ours(corpus, work, side.endswith("sha1"))
    LocalPipelineExecutor(pipeline, tasks=1, workers=1, logging_dir=str(work / "logs")).run()
    stats = json.loads((work / "logs" / "stats.json").read_text())
    kept = next((s["stats"].get("total", 0) for s in stats if "Writer" in s["name"] or "💽" in s["name"]), None)
    print(json.dumps({"written": kept}))


def run_side(side: str, corpus: Path, work: Path) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LOGURU_LEVEL": "WARNING"}
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, __file__, "--child", side, str(corpus), str(work)], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    out = p.stdout.read().decode().strip().splitlines()
    if status != 0:
        raise SystemExit(f"{side} failed (status {status})")
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024, **json.loads(out[-1])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/bench_curate")
    ap.add_argument("--mb", type=float, nargs="+", default=[24, 96])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sides", default=",".join(SIDES), help="comma-separated subset of " + ", ".join(SIDES))
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sides = [s for s in SIDES if s in args.sides.split(",")]
    if args.child:
        return child(args.child[0], Path(args.child[1]), Path(args.child[2]))
    work = Path(args.work)
    for mb in args.mb:
        corpus = work / f"corpus-{mb:g}"
        size = replicate(Path(args.shared), corpus, mb) if not corpus.is_dir() else sum(f.stat().st_size for f in corpus.glob("*.jsonl")) / 1e6
        runs: dict[str, list[dict]] = {s: [] for s in sides}
        for _ in range(args.reps):
            for side in sides:
                runs[side].append(run_side(side, corpus, work / "run"))
                print(f"  {mb:g} MB {side}: {runs[side][-1]}", flush=True)
        med = {s: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu", "rss_mb")} for s, rs in runs.items()}
        ref = med.get("datatrove-sha1")
        print(f"input {size:.1f} MB, median of {args.reps}")
        for s in sides:
            m = med[s]
            print(f"  {s:<15} {size / m['wall']:6.2f} MB/s wall  {size / m['cpu']:6.2f} MB/s CPU  "
                  + (f"(x{ref['cpu'] / m['cpu']:.2f} of datatrove by CPU, x{ref['wall'] / m['wall']:.2f} by wall)  " if ref else "")
                  + f"peak RSS {m['rss_mb']:.0f} MB  written {runs[s][-1]['written']}")


if __name__ == "__main__":
    main()
