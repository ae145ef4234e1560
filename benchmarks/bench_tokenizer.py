"""Tokenizer lab benchmarks on ../shared/data: 64k training, fairness against cl100k, report speed.

    python benchmarks/bench_tokenizer.py [--only train|report|extension] [--repeat N]

- train: 64k byte-level BPE on ../shared/data/mono (all 24 languages, 17 NTREX documents held
  out), balanced by bytes, by characters, and by parity (dev set: UDHR); wall-clock and peak
  RSS of each training (its own process), worst parity and fertility against cl100k on UDHR,
  and parity on the held-out NTREX documents (news, like FLORES, never trained on).
- report: `occiforge tokenizer report` over 24 languages with three tokenizers (cl100k, the
  demo-sized 8k tokenizer, the parity-balanced 64k one), median wall-clock of the whole CLI.
- extension: continued BPE (occiforge.tokenizer.extend) against appending the merges of a
  separately trained Greek BPE: new tokens used and Greek tokens saved on held-out Greek.

Prints markdown for BENCHMARKS.md. Skips (exit 0) when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("OCCIFORGE_SHARED", REPO.parent / "shared")) / "data"
UDHR = SHARED / "parallel" / "udhr"
BALANCES = ("bytes", "chars", "parity")
sys.path.insert(0, str(REPO))


def heldout_id(doc_id: str) -> bool:
    """17 of the 100 NTREX documents (same stories in every language) are never trained on."""
    return doc_id.startswith("NTREX") and int(hashlib.md5(doc_id.encode()).hexdigest(), 16) % 5 == 0


def load_mono() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    train: dict[str, list[str]] = {}
    held: dict[str, dict[str, str]] = {}
    for path in sorted((SHARED / "mono").glob("*.jsonl")):
        rows = [json.loads(line) for line in path.open(encoding="utf-8")]
        train[path.stem] = [r["text"] for r in rows if not heldout_id(r["id"])]
        held[path.stem] = {r["id"]: r["text"].replace("\n", " ") for r in rows if heldout_id(r["id"])}
    ids = sorted(held["en"])
    return train, {lang: [docs[i] for i in ids] for lang, docs in held.items()}


def train_worker(balance: str, vocab: int, out: Path) -> None:
    """Runs in its own process so that its peak RSS is its own."""
    from occiforge.recipe import TokenizerConfig
    from occiforge.tokenizer.balance import train_parity_balanced
    from occiforge.tokenizer.metrics import read_parallel
    from occiforge.tokenizer.train import sample_texts, train_tokenizer

    train, _ = load_mono()
    cfg = TokenizerConfig(vocab_size=vocab, balance_by=balance, sampling_alpha=1.0, parallel=str(UDHR), parity_rounds=6)
    t0 = time.perf_counter()
    history: list = []
    if balance == "parity":
        tok, history = train_parity_balanced(train, cfg, read_parallel(UDHR), log=lambda m: print(m, flush=True))
    else:
        tok = train_tokenizer(sample_texts(train, cfg), cfg)
    seconds = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "run.json").write_text(json.dumps({"seconds": seconds, "history": history}))


def run_child(args: list[str]) -> float:
    """Run this script as a child process; returns its peak RSS in MB."""
    proc = subprocess.Popen([sys.executable, __file__, *args], cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"child {args} failed with status {status}")
    return usage.ru_maxrss / 1024


def bench_train(work: Path, vocab: int) -> dict[str, Path]:
    from occiforge.tokenizer.encoders import HFEncoder, load_encoder
    from occiforge.tokenizer.metrics import measure_parallel, read_parallel

    _, held = load_mono()
    udhr = read_parallel(UDHR)
    cl = load_encoder("tiktoken:cl100k_base")
    cl_udhr, cl_held = measure_parallel(cl, udhr), measure_parallel(cl, held)
    print(f"\n### {vocab // 1000}k BPE on ../shared/data/mono, sampling_alpha 1.0\n")
    print("| balance | train s | peak RSS MB | worst parity UDHR | worst parity NTREX held-out | el parity UDHR | fertility below cl100k (UDHR, 23 non-English) |")
    print("|---|---|---|---|---|---|---|")
    paths = {}
    for balance in BALANCES:
        out = work / f"{balance}-{vocab}"
        rss = run_child(["--worker", balance, "--vocab", str(vocab), "--out", str(out)])
        meta = json.loads((out / "run.json").read_text())
        enc = HFEncoder(balance, __import__("tokenizers").Tokenizer.from_file(str(out / "tokenizer.json")))
        u, h = measure_parallel(enc, udhr), measure_parallel(enc, held)
        wu = max((x for x in u if x != "en"), key=lambda x: u[x]["parity"])
        wh = max((x for x in h if x != "en"), key=lambda x: h[x]["parity"])
        below = [x for x in u if x != "en" and u[x]["fertility"] < cl_udhr[x]["fertility"]]
        rounds = f" ({len(meta['history'])} rounds)" if meta["history"] else ""
        print(f"| {balance}{rounds} | {meta['seconds']:.0f} | {rss:.0f} | {u[wu]['parity']:.2f} ({wu}) | {h[wh]['parity']:.2f} ({wh}) "
              f"| {u['el']['parity']:.2f} | {len(below)}/23 |")
        paths[balance] = out / "tokenizer.json"
        if balance == "parity":
            _fairness_table(u, h, cl_udhr, cl_held)
    return paths


def _fairness_table(u: dict, h: dict, cl_udhr: dict, cl_held: dict) -> None:
    print("\nParity-balanced 64k against cl100k, per language (fertility on UDHR; parity on UDHR and held-out NTREX):\n")
    print("| lang | fertility 64k | fertility cl100k | parity 64k UDHR | parity cl100k UDHR | parity 64k NTREX | parity cl100k NTREX |")
    print("|---|---|---|---|---|---|---|")
    for lang in sorted(u):
        print(f"| {lang} | {u[lang]['fertility']:.2f} | {cl_udhr[lang]['fertility']:.2f} | {u[lang]['parity']:.2f} | "
              f"{cl_udhr[lang]['parity']:.2f} | {h[lang]['parity']:.2f} | {cl_held[lang]['parity']:.2f} |")
    print()


def bench_report(work: Path, tokenizers: list[str], repeat: int) -> None:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        args = [sys.executable, "-m", "occiforge.cli", "tokenizer", "report", "--parallel", str(UDHR), "--output", str(work / "report.json"), "-q"]
        for spec in tokenizers:
            args += ["--tokenizer", spec]
        subprocess.run(args, cwd=REPO, check=True)
        times.append(time.perf_counter() - t0)
    report = json.loads((work / "report.json").read_text())
    print(f"\n`occiforge tokenizer report`, {len(report['languages'])} languages x {len(tokenizers)} tokenizers "
          f"({', '.join(report['tokenizers'])}): median {statistics.median(times):.1f}s over {repeat} runs "
          f"(whole CLI process, charts included)\n")


def bench_extension(work: Path) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    from occiforge.recipe import TokenizerConfig
    from occiforge.tokenizer.extend import apply_merges, extend
    from occiforge.tokenizer.train import sample_texts, train_tokenizer

    train, held = load_mono()
    demo = {lang: [json.loads(x)["text"] for x in (REPO / "occiforge/demo/corpus" / f"{lang}.jsonl").open()] for lang in train}
    cfg = TokenizerConfig(vocab_size=4096)
    base = train_tokenizer(sample_texts(demo, cfg), cfg)  # the demo's tokenizer settings
    greek, test = train["el"], held["el"]
    n_new = 1000
    rows = {}
    t0 = time.perf_counter()
    cont, ext = extend(base, {"el": greek}, n_new)
    rows["continued BPE (occiforge)"] = (cont, len(ext.added), time.perf_counter() - t0)
    sep = Tokenizer(models.BPE())
    sep.normalizer, sep.pre_tokenizer = normalizers.NFC(), pre_tokenizers.ByteLevel(add_prefix_space=False)
    sep.train_from_iterator(greek, trainers.BpeTrainer(vocab_size=8000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    have, merges = set(base.get_vocab()), []
    for a, b in json.loads(sep.to_str())["model"]["merges"]:
        if a in have and b in have and a + b not in have and len(merges) < n_new:
            merges.append((a, b))
            have.add(a + b)
    appended, ext2 = apply_merges(base, merges)
    rows["separate Greek BPE, merges appended"] = (appended, len(ext2.added), float("nan"))
    n_base = sum(len(e.ids) for e in base.encode_batch(test, add_special_tokens=False))
    print(f"\nExtending a 4k demo-style tokenizer by {n_new} Greek tokens (learned on ../shared/data/mono/el.jsonl, "
          f"measured on {len(test)} held-out NTREX documents, {n_base} base tokens):\n")
    print("| method | new tokens | used on held-out Greek | Greek tokens saved | seconds |")
    print("|---|---|---|---|---|")
    v = base.get_vocab_size()
    for name, (tok, n_added, secs) in rows.items():
        enc = tok.encode_batch(test, add_special_tokens=False)
        used = len({i for e in enc for i in e.ids if i >= v})
        saved = 1 - sum(len(e.ids) for e in enc) / n_base
        print(f"| {name} | {n_added} | {used / n_added:.0%} | {saved:.1%} | {secs:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("train", "report", "extension"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--vocab", type=int, default=64000)
    parser.add_argument("--worker", choices=BALANCES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return train_worker(args.worker, args.vocab, args.out)
    if not (SHARED / "mono").is_dir():
        print(f"skipped: {SHARED} not found")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.only in (None, "extension"):
            bench_extension(work)
        trained = bench_train(work, args.vocab) if args.only in (None, "train", "report") else {}
        if args.only in (None, "report"):
            run_child(["--worker", "chars", "--vocab", "8000", "--out", str(work / "small")])
            small = work / "small" / "tokenizer.json"
            bench_report(work, ["tiktoken:cl100k_base", f"chars-8k={small}", f"parity-64k={trained['parity']}"], args.repeat)
    return None


if __name__ == "__main__":
    main()
