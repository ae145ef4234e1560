"""Mixture of European Experts on the demo: bits per byte, routing shares and stage seconds.

    python benchmarks/bench_experts.py [RUN_DIR]

Reads a finished `occiforge run recipes/demo.yaml` (RUN_DIR, default: runs it from scratch in a
temporary folder) and prints the markdown tables of BENCHMARKS.md ("Mixture of European Experts"):
per language the bilingual expert, the joint model, the linear merge and the mixture without and
with its brief training, the relative gaps, the routing shares and the experts stages' seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORE = ["de", "fr", "es", "it"]
MODELS = ["expert", "joint", "merged", "moe", "moe-ft"]


def tables(run: Path) -> str:
    bpb = json.loads((run / "eval" / "results.json").read_text())["bpb"]
    routing = json.loads((run / "moe" / "manifest.json").read_text())["routing"]
    ft = json.loads((run / "moe" / "moe-ft" / "manifest.json").read_text())
    out = ["| language | " + " | ".join(MODELS) + " | moe-ft vs expert | moe-ft vs joint |", "|---" * (len(MODELS) + 3) + "|"]
    for lang in CORE:
        row = {m: bpb[f"cpt-{lang}" if m == "expert" else m][lang] for m in MODELS}
        gaps = [f"{100 * (row['moe-ft'] / row[other] - 1):+.1f}%" for other in ("expert", "joint")]
        out.append(f"| {lang} | " + " | ".join(f"{row[m]:.3f}" for m in MODELS) + f" | {gaps[0]} | {gaps[1]} |")
    out += ["", "| mixture | " + " | ".join(f"{lang} (layer 0 / 1 / mean)" for lang in CORE) + " | en (to de / fr / es / it) |",
            "|---" * (len(CORE) + 2) + "|"]
    for name, shares in routing.items():
        cells = [" / ".join(f"{v:.2f}" for v in [*(layer[i] for layer in shares[lang]["layers"]), shares[lang]["mean"][i]])
                 for i, lang in enumerate(CORE)]
        en = " / ".join(f"{v:.2f}" for v in shares["en"]["mean"]) if "en" in shares else "-"
        out.append(f"| {name} | " + " | ".join(cells) + f" | {en} |")
    secs = {s: json.loads((run / s / "manifest.json").read_text())["seconds"] for s in ("merge", "moe", "eval", "transfer")}
    out += ["", f"moe-ft trained on {ft['train_tokens']:,} tokens ({100 * ft['train_share_of_expert']:.0f}% of one expert's); "
            "stage seconds: " + ", ".join(f"{s} {v:.0f} s" for s, v in secs.items())]
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(tables(Path(sys.argv[1])))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "occiforge.cli", "run", "recipes/demo.yaml", "-q", "--set", f"run_dir={tmp}/run"],
                           cwd=REPO, check=True)
            print(tables(Path(tmp) / "run"))
