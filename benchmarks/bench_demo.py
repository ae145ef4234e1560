"""Wall-clock of `occiforge run recipes/demo.yaml` from scratch, per stage, on this machine.

    python benchmarks/bench_demo.py [--repeat N]

Prints the median total and the median seconds of each stage (read from the manifests).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAGES = ("data", "tokenizer", "tokens", "models", "eval", "report")


def one_run() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "occiforge.cli", "run", "recipes/demo.yaml", "-q", "--set", f"run_dir={tmp}/run"],
                       cwd=REPO, check=True)
        times = {"total": time.perf_counter() - t0}
        for stage in STAGES:
            times[stage] = json.loads((Path(tmp) / "run" / stage / "manifest.json").read_text())["seconds"]
    return times


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.repeat)]
    medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"demo wall-clock, median of {args.repeat}: " + ", ".join(f"{k} {v:.1f}s" for k, v in medians.items()))
