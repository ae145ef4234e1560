"""GPU check of the training path (run on a CUDA machine; not part of `make bench` on CPU).

    python benchmarks/gpu_check_train.py

On one GPU: the one training loop with bf16 autocast, eager versus `compile: true` (each
decoder layer compiled by `parallelize`), tokens per second (median of timed steps after
warm-up), peak memory; and exact resumption from a DCP/safetensors checkpoint on the GPU.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from occiforge.dist import DistInfo
from occiforge.loop import LoopSpec, train
from occiforge.recipe import OptimConfig, TrainConfig
from occiforge.train.parallel import parallelize

SEQ, BATCH = 1024, 16
DEV = torch.device("cuda")
STREAM = np.tile(np.arange(3000, dtype=np.int64), 2000)  # periodic text: learnable


def _model(compile_: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                      num_key_value_heads=4, intermediate_size=2048, max_position_embeddings=SEQ, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).to(DEV)
    model.config.use_cache = False  # as the train stage does
    return parallelize(model, TrainConfig(compile=compile_, precision="bf16"), DistInfo.single())


def _batch(step: int, micro: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng([0, step])  # a pure function of the step: a resumed run reads the same rows
    starts = rng.integers(0, len(STREAM) - SEQ + 1, size=BATCH)
    ids = torch.from_numpy(np.stack([STREAM[s : s + SEQ] for s in starts]))
    return {"input_ids": ids, "labels": ids}


def _spec(steps: int, save_every: int = 10_000) -> LoopSpec:
    return LoopSpec(steps=steps, lr=3e-4, optim=OptimConfig(warmup_steps=5), grad_accum=1, precision="bf16",
                    save_every=save_every, log_every=1, fingerprint="gpu-check")


def throughput(compile_: bool, steps: int = 40, warmup: int = 10) -> None:
    model = _model(compile_)
    stamps: list[float] = []

    def on_step(step: int, loss: float) -> None:
        torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        hist = train(model, _batch, _spec(steps), Path(tmp), on_step=on_step)
    per_step = statistics.median(b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1 :]))
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"{'compile' if compile_ else 'eager  '}: {params:.0f}M params, {BATCH * SEQ / per_step:,.0f} tokens/s, "
          f"first step {stamps[0] - t0:.1f}s, peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB, "
          f"loss {hist[0]['loss']:.3f} -> {hist[-1]['loss']:.3f}")


def resume_exactness() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        straight = _model(False)
        train(straight, _batch, _spec(12, save_every=6), Path(tmp) / "a")
        broken = _model(False)

        def stop(step: int, loss: float) -> None:
            if step == 8:
                raise KeyboardInterrupt

        try:
            train(broken, _batch, _spec(12, save_every=6), Path(tmp) / "b", on_step=stop)
        except KeyboardInterrupt:
            pass
        resumed = _model(False)
        msgs: list[str] = []
        train(resumed, _batch, _spec(12, save_every=6), Path(tmp) / "b", log=msgs.append)
        diff = max((p - q).abs().max().item() for p, q in zip(straight.parameters(), resumed.parameters()))
        print(f"resume on GPU: {msgs[0] if msgs else 'NOT RESUMED'}; max |param diff| vs uninterrupted = {diff:.2e}")


if __name__ == "__main__":
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    throughput(False)
    throughput(True)
    resume_exactness()
