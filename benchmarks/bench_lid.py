"""Language ID on unlabelled documents: accuracy per language on ../shared/data/mono.

Every document's label is hidden and occiforge's `LanguageIdFilter` (py3langid over the 24 EU
languages, threshold as in the recipes) assigns one; a document counts as correct when it is
kept with its true language. Goal (issue 10): at least 97% for every language.

    .venv/bin/python benchmarks/bench_lid.py [--shared ../shared/data] [--threshold 0.5]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from datatrove.data import Document

from occiforge.data.steps import LanguageIdFilter
from occiforge.languages import all_codes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--threshold", type=float, default=0.5)
    args = ap.parse_args()
    lid = LanguageIdFilter(args.threshold, all_codes())
    rows, t0, n_all = {}, time.perf_counter(), 0
    for lang in all_codes():
        docs = [json.loads(line) for line in (Path(args.shared) / "mono" / f"{lang}.jsonl").open()]
        ok, wrong = 0, {}
        for d in docs:
            doc = Document(text=d["text"], id=d["id"], metadata={"language": None})
            kept = lid.filter(doc) is True
            if kept and doc.metadata["language"] == lang:
                ok += 1
            else:
                key = doc.metadata["language"] if kept else "dropped"
                wrong[key] = wrong.get(key, 0) + 1
        rows[lang] = (ok / len(docs), len(docs), wrong)
        n_all += len(docs)
    secs = time.perf_counter() - t0
    print(f"{'lang':<5}{'accuracy':>9}{'docs':>6}  errors")
    for lang, (acc, n, wrong) in rows.items():
        print(f"{lang:<5}{acc:>9.3f}{n:>6}  {wrong or ''}")
    worst = min(rows.items(), key=lambda kv: kv[1][0])
    print(f"worst: {worst[0]} {worst[1][0]:.3f}; {n_all} documents in {secs:.1f}s; goal >= 0.97 for every language: "
          f"{'met' if worst[1][0] >= 0.97 else 'NOT met'}")


if __name__ == "__main__":
    main()
