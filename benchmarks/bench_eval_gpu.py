"""The multiple-choice scorer on a GPU: prefix sharing versus one sequence per choice (lm-eval's way).

A ~110M-parameter random Llama (8 layers, 1024 wide, 8k BPE trained on the built-in demo corpus)
scores the demo's multiple-choice items (5 languages x 34, 4 choices) 5-shot and 25-shot (ARC's
setting: long shared contexts), fp32 and bf16. Reports items per second for both modes, the
largest log-likelihood difference between them, and fp32 GPU against fp32 CPU on a subset.
Needs only torch, transformers and tokenizers (lm-eval itself is compared in bench_eval.py).

    python benchmarks/bench_eval_gpu.py [--out FILE.json] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from occiforge.eval.scorer import Scorer  # noqa: E402
from occiforge.eval.tasks import TARGET_DELIMITER, load_tasks, pose  # noqa: E402


def build(hidden: int, layers: int) -> tuple[object, object]:
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from occiforge.recipe import TokenizerConfig
    from occiforge.tokenizer.train import BOS, EOS, PAD, train_tokenizer

    texts = [json.loads(line)["text"] for f in sorted((REPO / "occiforge/demo/corpus").glob("*.jsonl")) for line in f.open()]
    # the project's own byte-level BPE trainer (min_frequency 1: every pair may merge)
    fast = PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(texts, TokenizerConfig(vocab_size=8192, min_frequency=1)),
                                   bos_token=BOS, eos_token=EOS, pad_token=PAD)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=16,
                      num_key_value_heads=16, intermediate_size=hidden * 11 // 4, max_position_embeddings=4096,
                      bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    model = LlamaForCausalLM(cfg).eval()
    return model, fast


def requests(shots: int) -> list[tuple[str, list[str]]]:
    posed = [p for t in load_tasks("builtin:demo_qa", shots=shots) for p in pose(t, 1234)]
    return [(p.context, [TARGET_DELIMITER + c for c in p.choices]) for p in posed]


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(scorer: Scorer, reqs: list, reps: int) -> tuple[float, list[float]]:
    times, lls = [], []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        lls = scorer.loglikelihoods(reqs).loglikelihoods
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), [v for row in lls for v in row]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("skipped: no GPU")
        return
    model, tok = build(args.hidden, args.layers)
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    report: dict[str, object] = {"device": name, "torch": torch.__version__,
                                 "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1)}
    cpu_reqs = requests(5)[:12]
    cpu_ref = [v for row in Scorer(model, tok, batch_size=4, prefix_sharing=False).loglikelihoods(cpu_reqs).loglikelihoods for v in row]
    for dtype in (torch.float32, torch.bfloat16):
        model.to(args.device, dtype)
        for shots in (5, 25):
            reqs = requests(shots)
            row: dict[str, object] = {"items": len(reqs)}
            for share in (True, False):
                scorer = Scorer(model, tok, batch_size=args.batch_size, prefix_sharing=share)
                scorer.loglikelihoods(reqs[:8])  # warm-up
                secs, lls = timed(scorer, reqs, args.reps)
                row["shared" if share else "per_choice"] = {"seconds": round(secs, 3), "items_per_s": round(len(reqs) / secs, 1)}
                row["lls_" + ("shared" if share else "plain")] = lls
            a, b = row.pop("lls_shared"), row.pop("lls_plain")
            row["max_abs_ll_diff"] = max(abs(x - y) for x, y in zip(a, b, strict=True))
            row["speedup"] = round(row["per_choice"]["seconds"] / row["shared"]["seconds"], 2)  # type: ignore[index]
            report[f"{str(dtype).removeprefix('torch.')}_{shots}shot"] = row
            print(str(dtype), shots, json.dumps(row), flush=True)
        if dtype == torch.float32:
            gpu = [v for r in Scorer(model, tok, batch_size=4).loglikelihoods(cpu_reqs).loglikelihoods for v in r]
            report["fp32_gpu_vs_cpu_max_abs_ll_diff"] = max(abs(x - y) for x, y in zip(gpu, cpu_ref, strict=True))
    if args.device == "cuda":
        report["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, dict)}))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
