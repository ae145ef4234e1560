"""Near-dedup quality: precision and recall of MinHash near-dedup on ../shared/data/mono with
injected near-duplicates of known ground truth, and near-duplicate pairs across train/held-out.

For 10% of each language's documents a near-copy is added (3% of the words replaced, a
boilerplate line added), then `occiforge data` runs with the quality filters off. Documents are
keyed by (language, id): the parallel sources of the corpus (NTREX, FLORES) reuse one id in
every language, and a global id key counted 186 removals as "outside the injected pairs" that
were other languages' copies (and lv repeats 46 ids in its own file: ids get a `~<line>` suffix).

- recall: share of injected pairs of which exactly one copy is kept (also given for the pairs
  whose true 5-gram Jaccard is >= 0.7: short documents fall below it after 3% edits);
- precision: share of (near-)duplicate removals that are right: the removed document belongs to
  an injected pair, or a kept document of its language has 5-gram Jaccard >= 0.7 with it (a
  near-duplicate already in the corpus, verified by measuring);
- cross-split pairs: train x held-out pairs with 5-gram Jaccard >= 0.7 (brute force).
Goal (issue 10): precision and recall >= 0.95, zero cross-split pairs.

    .venv/bin/python benchmarks/bench_dedup.py [--buckets 25 --rows 4] [--shared ../shared/data] [--work /tmp/bench_dedup]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
FILLER = ["und", "the", "de", "la", "il", "na", "i", "a", "ja", "og"]


def near_copy(text: str, rng: random.Random) -> str:
    words = text.split()
    for _ in range(max(1, len(words) * 3 // 100)):
        words[rng.randrange(len(words))] = rng.choice(FILLER)
    return " ".join(words) + "\nShare this article"


def grams(text: str, n: int = 5) -> set:
    w = text.lower().split()
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / max(1, len(a | b))


def build_corpus(shared: Path, work: Path) -> tuple[list[str], dict, dict]:
    """Per-language JSONL files with injected near-copies; returns (languages, pairs, texts) keyed by (lang, id)."""
    (work / "corpus").mkdir(parents=True)
    rng, pairs, texts, langs = random.Random(0), {}, {}, []
    for path in sorted((shared / "mono").glob("*.jsonl")):
        lang = path.stem
        langs.append(lang)
        # ids made unique: lv repeats 46 ids within its file
        docs = [{**json.loads(line), "id": f"{json.loads(line)['id']}~{i}"} for i, line in enumerate(path.open())]
        out = list(docs)
        for d in rng.sample(docs, max(1, len(docs) // 10)):
            copy = {**d, "id": d["id"] + "#copy", "text": near_copy(d["text"], rng)}
            out.append(copy)
            pairs[(lang, f"mono/{d['id']}")] = (lang, f"mono/{copy['id']}")
        texts.update({(lang, f"mono/{d['id']}"): d["text"] for d in out})
        rng.shuffle(out)
        (work / "corpus" / f"{lang}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out))
    return langs, pairs, texts


def read_kept(run: Path, langs: list[str]) -> dict[tuple[str, str], tuple[str, str]]:
    kept = {}
    for lang in langs:
        for f in (run / "data" / lang).glob("*/*.jsonl.gz"):
            with gzip.open(f, "rt") as fh:
                for line in fh:
                    d = json.loads(line)
                    kept[(lang, d["id"])] = (d["text"], d["metadata"]["split"])
    return kept


def score(langs: list[str], pairs: dict, texts: dict, kept: dict, stats: dict) -> dict:
    g = {k: grams(t) for k, t in texts.items()}
    pair_j = {a: jaccard(g[a], g[b]) for a, b in pairs.items()}
    found = {a: (a in kept) != (b in kept) for a, b in pairs.items()}
    high = [a for a, j in pair_j.items() if j >= 0.7]
    in_pairs = set(pairs) | set(pairs.values())
    removed = sum(r["dropped"].get("near_duplicate", 0) + r["dropped"].get("duplicate", 0) for r in stats.values())
    gone = [k for k in texts if k not in kept]
    gone_in_pairs = [k for k in gone if k in in_pairs]
    outside = []  # removals outside injected pairs: (key, best Jaccard with a kept document of its language)
    for k in gone:
        if k not in in_pairs:
            outside.append((k, max((jaccard(g[k], g[o]) for o in kept if o[0] == k[0]), default=0.0)))
    verified = [k for k, j in outside if j >= 0.7]
    cross = 0
    for lang in langs:
        train = [grams(t) for (lg, _), (t, s) in kept.items() if lg == lang and s == "train"]
        for (lg, _), (t, s) in kept.items():
            if lg == lang and s == "heldout":
                h = grams(t)
                cross += sum(jaccard(h, x) >= 0.7 for x in train)
    return {"pairs": len(pairs), "pairs_j07": len(high), "recall": sum(found.values()) / len(pairs),
            "recall_j07": sum(found[a] for a in high) / max(1, len(high)), "removed": removed,
            "removed_in_pairs": len(gone_in_pairs), "outside": outside, "outside_verified": len(verified),
            "precision": (len(gone_in_pairs) + len(verified)) / max(1, removed), "cross_split_pairs": cross,
            "missed_below_07": sum(not found[a] and pair_j[a] < 0.7 for a in pairs)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/bench_dedup")
    ap.add_argument("--buckets", type=int, default=None, help="LSH bands (default: the recipe default)")
    ap.add_argument("--rows", type=int, default=None, help="hashes per band (default: the recipe default)")
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    langs, pairs, texts = build_corpus(Path(args.shared), work)
    nd = {k: v for k, v in (("num_buckets", args.buckets), ("hashes_per_bucket", args.rows)) if v}
    # removals by language ID or length are not dedup: LID off, so every removal is a dedup decision
    recipe = {"name": "bench", "run_dir": str(work / "run"), "languages": langs, "models": {},
              "data": {"sources": [{"name": "mono", "path": str(work / "corpus")}], "heldout_fraction": 0.1,
                       "lid": {"enabled": False}, "filters": {"min_chars": 1}, "near_dedup": nd,
                       "quality": {"gopher": False, "cookie_lines": False, "pii": False},
                       "executor": {"tasks": 2, "workers": 2}}}
    (work / "r.yaml").write_text(yaml.safe_dump(recipe))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "occiforge.cli", "data", "-q", "-c", str(work / "r.yaml")], cwd=REPO, check=True)
    secs = time.perf_counter() - t0
    stats = json.loads((work / "run" / "data" / "stats.json").read_text())
    r = score(langs, pairs, texts, read_kept(work / "run", langs), stats)
    print(f"LSH {nd or 'recipe default'}; data stage {secs:.1f}s")
    print(f"injected pairs {r['pairs']} ({r['pairs_j07']} with 5-gram Jaccard >= 0.7); removed as (near-)duplicates {r['removed']}")
    print(f"recall {r['recall']:.4f} (pairs with J >= 0.7: {r['recall_j07']:.4f}; missed pairs below 0.7: {r['missed_below_07']})")
    print(f"precision {r['precision']:.4f}: {r['removed_in_pairs']} removals in injected pairs, {len(r['outside'])} outside, "
          f"{r['outside_verified']} of them verified near-duplicates (J >= 0.7 with a kept document)")
    for (lang, doc_id), j in r["outside"]:
        print(f"  outside: {lang} {doc_id} best Jaccard with a kept document {j:.3f}")
    print(f"cross-split pairs (train x held-out, J >= 0.7): {r['cross_split_pairs']}")


if __name__ == "__main__":
    main()
