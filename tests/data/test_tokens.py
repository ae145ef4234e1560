"""The tokens stage's encoder: the same ids as the HF tokenizer, document boundaries, counts per
source, and tokenizers' thread pool switched on for the stage only."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np

from occiforge.data.tokens import tokenize_language
from occiforge.recipe import TokenizerConfig
from occiforge.tokenizer.train import save_hf, train_tokenizer
from tests.data.helpers import TEXTS


def test_ids_boundaries_and_counts_per_source(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    docs = [(f"{TEXTS['de']} {i}", "crawl" if i % 3 else "curated") for i in range(700)]  # more than one batch of 512
    shard = tmp_path / "data" / "de" / "train" / "00000.jsonl.gz"
    shard.parent.mkdir(parents=True)
    with gzip.open(shard, "wt", encoding="utf-8") as f:
        for i, (text, src) in enumerate(docs):
            f.write(json.dumps({"text": text, "id": str(i), "metadata": {"source": src}}) + "\n")
    tok = save_hf(train_tokenizer(TEXTS.values(), TokenizerConfig(vocab_size=300, min_frequency=1)), tmp_path / "tok")

    meta = tokenize_language(tok, tmp_path / "data", "de", tmp_path / "out")
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"  # the caller's setting is back
    want = [[tok.bos_token_id, *tok(t, add_special_tokens=False)["input_ids"], tok.eos_token_id] for t, _ in docs]
    ids = np.fromfile(tmp_path / "out" / "train.bin", dtype=meta["dtype"])
    offsets = np.load(tmp_path / "out" / "docs.npy")
    assert [ids[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])] == want
    by_source = {src: sum(len(w) for w, (_, s) in zip(want, docs) if s == src) for src in ("crawl", "curated")}
    assert meta["per_source"] == by_source and meta["tokens"] == sum(by_source.values()) and meta["documents"] == 700
