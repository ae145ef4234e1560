"""Host RAM per rank while a saved model is loaded and sharded under FSDP2 (2 CPU processes, gloo).

    python benchmarks/bench_load.py            # a 0.25B Llama folder, both ways, on 2 and 4 ranks

The folder holds bf16 weights, as released models do; training loads them as fp32. `every`: each rank
loads the whole model, then `fully_shard` shards it (occiforge before 2026-12-01). `rank0`:
`occiforge.train.parallel.load_sharded`: rank 0 loads it, the others build it on the meta device and
receive their shards. Measured per rank: the peak of anonymous resident memory (RssAnon, sampled every
2 ms) above its level before loading. Not ru_maxrss: it also counts the safetensors file's page cache,
which all ranks share (an fp32 folder is memory-mapped and never copied: RssAnon does not move).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ARCH = {"hidden_size": 1024, "num_hidden_layers": 16, "num_attention_heads": 16, "num_key_value_heads": 8,
        "intermediate_size": 2816, "vocab_size": 32000, "tie_word_embeddings": False}


def _anon() -> int:
    """Anonymous resident memory of this process, bytes (/proc/self/status, RssAnon in kB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


class PeakAnon:
    """The highest RssAnon seen while running, sampled by a thread."""

    def __init__(self) -> None:
        import threading

        self.peak, self.done = _anon(), threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.done.wait(0.002):
            self.peak = max(self.peak, _anon())

    def stop(self) -> int:
        self.done.set()
        self.thread.join()
        return max(self.peak, _anon())


def worker(mode: str, folder: str, out: str) -> None:
    import gc

    from occiforge import dist
    from occiforge.lm import load_causal_lm
    from occiforge.recipe import TrainConfig
    from occiforge.train.parallel import load_sharded, parallelize

    info = dist.init()
    base = _anon()
    watch = PeakAnon()
    if mode == "every":
        model = parallelize(load_causal_lm(folder), TrainConfig(), info)
    else:
        model = load_sharded(lambda: load_causal_lm(folder), TrainConfig(), info)
    gc.collect()
    shard = sum(p.to_local().numel() for p in model.parameters()) * 4
    peak = watch.stop() - base
    with open(f"{out}.{info.rank}", "w", encoding="utf-8") as f:
        json.dump({"rank": info.rank, "peak_mib": peak / 2**20, "after_mib": (_anon() - base) / 2**20, "shard_mib": shard / 2**20}, f)
    dist.finish()


def main() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(**ARCH))
        params = sum(p.numel() for p in model.parameters())
        model.to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
        del model
        print(f"model: {params / 1e6:.0f}M parameters, saved in bf16, {params * 4 / 2**20:.0f} MiB in fp32")
        for ranks in (2, 4):
            for mode in ("every", "rank0"):
                out = Path(tmp) / f"{mode}{ranks}"
                env = {**os.environ, "OMP_NUM_THREADS": "1"}
                subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
                                "--master_port=29655", __file__, "--worker", mode, str(folder), str(out)], check=True,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                rows = [json.loads(Path(f"{out}.{rank}").read_text()) for rank in range(ranks)]
                peaks = " / ".join(f"{r['peak_mib']:.0f}" for r in rows)
                print(f"{ranks} ranks, {mode:5s}: peak MiB per rank {peaks} (sum {sum(r['peak_mib'] for r in rows):.0f}); "
                      f"after: {rows[0]['after_mib']:.0f} / {rows[-1]['after_mib']:.0f}, shards {rows[0]['shard_mib']:.0f} each")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(*sys.argv[2:5])
    else:
        main()
