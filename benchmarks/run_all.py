"""Run every benchmark script in this folder (bench_*.py), one after another."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

if __name__ == "__main__":
    scripts = sorted(Path(__file__).parent.glob("bench_*.py"))
    failed = [s.name for s in scripts if subprocess.call([sys.executable, str(s)]) != 0]
    print(f"{len(scripts) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)
