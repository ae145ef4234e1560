"""The packing plan at pre-training scale: time and peak memory to plan one epoch of N documents.

    .venv/bin/python benchmarks/bench_packing.py [--docs 100000,1000000,4000000] [--reps 3] [--peer REV]

Per size and repetition, each side in a fresh process (peak RSS is the process's own), alternating:
occiforge's `LanguagePass` (flat arrays per epoch, two epochs kept) and the peer, the same module
at git revision `--peer` (default 617b6fb: a Python list per row, every epoch kept). Documents
have log-normal lengths (median 600 tokens, as web text), rows are 4097 tokens (seq_len 4096);
only offsets exist (planning never reads token ids). Each side plans epoch 0, then answers
`usage` for one whole epoch, as the trainer does at start (that locates the first row of epoch 1,
so two epochs are planned). Both sides must give the same rows (a digest of every 1000th row).

    .venv/bin/python benchmarks/bench_packing.py --ranks 4 --docs 1000000

starts that many processes at once, as the ranks of a node, planning the same language: each on its
own, then sharing one plan (`PlanCache`: one builds under a lock, the others memory-map it). Per
rank: seconds, the growth of its peak RSS while planning, and the growth of its proportional share
of memory (Pss, which splits the mapped plan's pages among the processes that map them).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _module(peer: str | None) -> types.ModuleType:
    if peer is None:
        from occiforge.train import packing

        return packing
    src = subprocess.run(["git", "show", f"{peer}:occiforge/train/packing.py"], cwd=REPO, check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "peer_packing.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("peer_packing", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["peer_packing"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _offsets(n: int) -> np.ndarray:
    """n documents of log-normal length (median 600 tokens), as offsets into one token stream."""
    lens = np.maximum(1, np.random.default_rng(0).lognormal(np.log(600), 1.0, size=n)).astype(np.int64)
    return np.concatenate([[0], np.cumsum(lens)])


def one(n: int, peer: str | None) -> dict:
    """Runs in a child: plan epoch 0 of n documents; seconds, peak RSS and a digest of the rows."""
    mod = _module(peer)
    offsets = _offsets(n)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    p = mod.LanguagePass(mod.Docs(np.zeros(0, np.uint16), offsets), window=4097, seed=0, stream=0, split_long=True)
    ep = p.epoch(0)
    rows = len(ep)
    used = p.usage(rows)
    secs = time.perf_counter() - t
    h = hashlib.sha256()
    for k in range(0, rows, max(1, rows // 1000)):  # a sample of rows, the same on both sides
        h.update(np.asarray(ep.row(k) if hasattr(ep, "row") else ep[k], dtype=np.int64).tobytes())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": secs, "peak_mb": peak / 1024, "plan_mb": (peak - base) / 1024, "rows": rows,
            "tokens": used, "digest": h.hexdigest()[:16]}


def _pss_mb() -> float:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rank(n: int, folder: str | None) -> dict:
    """Runs in a child: one rank's planning at start (epoch 0, usage of one epoch), alone or shared."""
    from occiforge.train.packing import Docs, LanguagePass, PlanCache

    offsets = _offsets(n)
    before, peak_before = _pss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    p = LanguagePass(Docs(np.zeros(0, np.uint16), offsets), window=4097, seed=0, stream=0, split_long=True,
                     cache=PlanCache(Path(folder)) if folder else None)
    p.usage(len(p.epoch(0)))
    return {"seconds": time.perf_counter() - t, "plan_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - peak_before,
            "plan_pss_mb": _pss_mb() - before}


def ranks(n: int, count: int) -> None:
    print(f"| {count} ranks, {n:,} documents | slowest rank s | planning's peak RSS MB per rank | planning's Pss MB, all ranks |"
          "\n|---|---:|---:|---:|")
    for shared in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, __file__, "--rank-child", str(n), str(Path(tmp) / "plan") if shared else ""]
            procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(count)]
            res = [json.loads(p.communicate()[0]) for p in procs]
        peaks = sorted(r["plan_peak_mb"] for r in res)
        print(f"| {'one shared plan' if shared else 'a plan per rank'} | {max(r['seconds'] for r in res):.2f} | "
              f"{peaks[0]:.0f}-{peaks[-1]:.0f} | {sum(r['plan_pss_mb'] for r in res):.0f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", default="100000,1000000,4000000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--peer", default="617b6fb")
    ap.add_argument("--ranks", type=int)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--rank-child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank_child:
        print(json.dumps(rank(int(args.rank_child[0]), args.rank_child[1] or None)))
        return
    if args.ranks:
        for n in (int(x) for x in args.docs.split(",")):
            ranks(n, args.ranks)
        return
    if args.child:
        n, side = int(args.child[0]), args.child[1]
        print(json.dumps(one(n, None if side == "occiforge" else side)))
        return
    print("| documents | side | seconds (median) | peak RSS MB | of it the plan, MB | rows |")
    print("|---:|---|---:|---:|---:|---:|")
    for n in (int(x) for x in args.docs.split(",")):
        res: dict[str, list[dict]] = {"occiforge": [], args.peer: []}
        for _ in range(args.reps):
            for side, runs in res.items():
                out = subprocess.run([sys.executable, __file__, "--child", str(n), side], check=True, capture_output=True, text=True)
                runs.append(json.loads(out.stdout))
        digests = {r["digest"] for rs in res.values() for r in rs}
        assert len(digests) == 1, f"the two sides planned different rows for {n} documents"
        for side, rs in res.items():
            med = {k: statistics.median(r[k] for r in rs) for k in ("seconds", "peak_mb", "plan_mb")}
            name = "occiforge" if side == "occiforge" else f"lists ({side})"
            print(f"| {n:,} | {name} | {med['seconds']:.2f} | {med['peak_mb']:.0f} | {med['plan_mb']:.0f} | {rs[0]['rows']:,} |",
                  flush=True)


if __name__ == "__main__":
    main()
