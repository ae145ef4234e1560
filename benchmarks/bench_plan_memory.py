"""`occiforge plan`'s memory estimate against a measured peak, on CPU (no GPU needed).

    python benchmarks/bench_plan_memory.py            # every case, each in a fresh process

Each case is one fresh process: a Llama built from a recipe's architecture, the one training loop
(`occiforge.loop.train`, fp32, AdamW) for a few steps on random tokens. Measured: the peak
resident set (ru_maxrss) minus the resident set just before the model is built. Estimated:
`occiforge.train.plan.memory` for one process (states, activations, loss; no
FSDP working set). Each case runs with the chunked loss (the default) and with the model's own, and twice: as glibc
keeps freed memory by default, and with a fixed mmap threshold, whose peak is that of live memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = [  # (name, seq_len, batch, activation checkpointing)
    ("T256 b8", 256, 8, False),
    ("T256 b8 ckpt", 256, 8, True),
    ("T512 b8", 512, 8, False),
    ("T1024 b4", 1024, 4, False),
    ("T1024 b4 ckpt", 1024, 4, True),
]
ARCH = {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 688, "max_position_embeddings": 1024}
VOCAB = 8192


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def one(seq: int, batch: int, ckpt: bool, chunked: bool) -> dict:
    import resource

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from occiforge.dist import DistInfo
    from occiforge.loop import LoopSpec, train
    from occiforge.recipe import OptimConfig, validate_tree
    from occiforge.train.parallel import parallelize
    from occiforge.train.plan import _scratch_config, memory, shape_of, total

    torch.set_num_threads(2)
    tree = {"name": "m", "languages": ["en"], "data": {"sources": [{"name": "d", "path": "builtin:demo"}]},
            "tokenizer": {"vocab_size": VOCAB},
            "train": {"architecture": ARCH, "seq_len": seq, "batch_size": batch, "precision": "fp32",
                      "activation_checkpointing": ckpt, "chunked_loss": chunked}, "models": {"m": {"mixture": {"en": 1.0}}}}
    r = validate_tree(tree, "bench")
    config = _scratch_config(r)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, VOCAB, (batch, seq), generator=gen) for _ in range(4)]
    base = _rss()
    torch.manual_seed(0)
    model = parallelize(LlamaForCausalLM(LlamaConfig(**config.to_dict())), r.train, DistInfo.single())
    model.config.use_cache = False
    spec = LoopSpec(steps=4, lr=1e-3, optim=OptimConfig(), grad_accum=1, precision="fp32", save_every=1000,
                    log_every=1000, fingerprint="x", chunked_loss=chunked)
    with tempfile.TemporaryDirectory() as tmp:
        train(model, lambda step, micro: {"input_ids": batches[step], "labels": batches[step]}, spec, Path(tmp) / "ckpt")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    est = memory(shape_of(config), r, 1, device="cpu")
    return {"measured": peak - base, "estimate": total(est, ckpt), "parts": est}  # one process: no FSDP working set


def main() -> None:
    if len(sys.argv) == 5:
        print(json.dumps(one(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "1")))
        return
    print("| case | loss | estimate | peak RSS growth | live peak | estimate / live peak |\n|---|---|---|---|---|---|")
    mib = 2**20
    for (name, seq, batch, ckpt), chunked in [(case, c) for case in CASES for c in (True, False)]:
        res = [_run(seq, batch, ckpt, chunked, live) for live in (False, True)]
        print(f"| {name} | {'chunked' if chunked else 'model'} | {res[0]['estimate'] / mib:.0f} MiB | {res[0]['measured'] / mib:.0f} MiB "
              f"| {res[1]['measured'] / mib:.0f} MiB | {res[0]['estimate'] / res[1]['measured']:.2f} |", flush=True)


def _run(seq: int, batch: int, ckpt: bool, chunked: bool, live: bool) -> dict:
    # live: a fixed mmap threshold makes glibc hand every large block back when it is freed, so the
    # peak resident set is the peak of live memory rather than what the heap kept for reuse
    env = {**os.environ, **({"MALLOC_MMAP_THRESHOLD_": "65536"} if live else {})}
    out = subprocess.run([sys.executable, __file__, str(seq), str(batch), str(int(ckpt)), str(int(chunked))],
                         capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
