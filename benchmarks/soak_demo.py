"""Soak (issue 13): the demo three times in a row, each a fresh process from scratch; peak memory
must stay flat and the results identical.

    .venv/bin/python benchmarks/soak_demo.py [--runs 3]

Per run: wall-clock, peak RSS of the run's process tree (`os.wait4`: the largest child), the
sha256 of every model's weights and of the evaluation scores. Prints one row per run and whether
every run's weights and scores equal the first run's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def digests(run: Path) -> dict[str, str]:
    out = {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
           for p in sorted(run.glob("*/*/model.safetensors"))}
    scores = json.loads((run / "eval" / "results.json").read_text())
    out["eval/results.json (scores)"] = hashlib.sha256(json.dumps({k: scores[k] for k in ("bpb", "mc") if k in scores},
                                                                  sort_keys=True).encode()).hexdigest()
    return out


def one(run: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "occiforge.cli", "run", "recipes/demo.yaml", "-q", "--set", f"run_dir={run}"],
                            cwd=REPO, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"demo run in {run} failed")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows, first = [], None
        for i in range(args.runs):
            run = Path(tmp) / f"run{i}"
            wall, rss = one(run)
            d = digests(run)
            first = first or d
            same = d == first
            rows.append(f"| {i + 1} | {wall:.0f} s | {rss:.0f} MB | {len(d) - 1} weight files | {'identical' if same else 'DIFFERENT'} |")
            print(rows[-1], flush=True)
        print("\n| run | wall-clock | peak RSS | hashed | weights and scores vs run 1 |\n|---|---|---|---|---|")
        print("\n".join(rows))


if __name__ == "__main__":
    main()
