"""Tokenization to shards: occiforge's tokens stage against a bare `encode_batch` of the same text.

    .venv/bin/python benchmarks/bench_tokens.py [--shared ../shared/data] [--mb 50] [--reps 3]

`../shared/data/mono` (all 24 languages) is replicated to about `--mb` MB of text and written in
the data stage's layout (`<lang>/train/00000.jsonl.gz`). Per repetition, in one process and in
alternating order: occiforge (`occiforge.data.tokens.tokenize_language` for every language: read
the gzipped shards, encode, write the token file, document offsets and per-source counts) and
the peer (`tokenizers.Tokenizer.encode_batch` over the same texts already in memory, batches of
512, nothing read or written: the limit). Both use tokenizers' thread pool on the machine's cores
(2 here). Goal (issue 10): occiforge at least 0.8 of the peer's MB/s.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "true"

from occiforge.data.tokens import BATCH, tokenize_language  # noqa: E402
from occiforge.languages import all_codes  # noqa: E402
from occiforge.recipe import TokenizerConfig  # noqa: E402
from occiforge.tokenizer.train import save_hf, train_tokenizer  # noqa: E402


def build(shared: Path, mb: float, data: Path) -> dict[str, list[str]]:
    texts = {lang: [json.loads(x)["text"] for x in (shared / "mono" / f"{lang}.jsonl").open(encoding="utf-8")] for lang in all_codes()}
    size = sum(len(t.encode()) for ts in texts.values() for t in ts)
    times = max(1, round(mb * 1e6 / size))
    texts = {lang: ts * times for lang, ts in texts.items()}
    for lang, ts in texts.items():
        (data / lang / "train").mkdir(parents=True)
        with gzip.open(data / lang / "train" / "00000.jsonl.gz", "wt", encoding="utf-8") as f:
            for i, t in enumerate(ts):
                f.write(json.dumps({"text": t, "id": f"{lang}-{i}", "metadata": {"source": "mono"}}, ensure_ascii=False) + "\n")
    return texts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--mb", type=float, default=50)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        texts = build(Path(args.shared), args.mb, root / "data")
        mb = sum(len(t.encode()) for ts in texts.values() for t in ts) / 1e6
        raw = train_tokenizer((t for ts in texts.values() for t in ts[:200]), TokenizerConfig(vocab_size=8192))
        tok = save_hf(raw, root / "tok")
        fast = tok.backend_tokenizer
        speeds: dict[str, list[float]] = {"occiforge": [], "encode_batch": []}
        for rep in range(args.reps):
            for side in (("occiforge", "encode_batch") if rep % 2 == 0 else ("encode_batch", "occiforge")):
                t0 = time.perf_counter()
                if side == "occiforge":
                    n = sum(tokenize_language(tok, root / "data", lang, root / "out" / lang)["tokens"] for lang in texts)
                else:
                    n = sum(len(e.ids) + 2 for ts in texts.values() for i in range(0, len(ts), BATCH)
                            for e in fast.encode_batch(ts[i:i + BATCH], add_special_tokens=False))
                dt = time.perf_counter() - t0
                speeds[side].append(mb / dt)
                print(f"rep {rep} {side}: {mb:.1f} MB in {dt:.1f} s = {mb / dt:.2f} MB/s ({n:,} tokens)", flush=True)
        med = {k: statistics.median(v) for k, v in speeds.items()}
        print(f"\n{mb:.1f} MB, {os.cpu_count()} cores, median of {args.reps}: occiforge {med['occiforge']:.2f} MB/s, "
              f"encode_batch {med['encode_batch']:.2f} MB/s, ratio {med['occiforge'] / med['encode_batch']:.2f}")


if __name__ == "__main__":
    main()
