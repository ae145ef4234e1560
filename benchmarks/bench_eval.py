"""occiforge's multiple-choice scorer versus lm-evaluation-harness, side by side on CPU.

Same tiny model (a demo-sized Llama: 2 layers, 96 wide, 4k-token BPE trained on ../shared/data/mono,
random weights, seeded), same items (every file of ../shared/data/mc: SIB-200 in 24 languages,
EXAMS, XCOPA; 0-shot), same prompts (lm-eval runs the YAMLs `occiforge eval --export-lm-eval`
writes), same batch size and threads. Each side runs in its own subprocess, timed from model
load to final scores (imports excluded), alternating, several repetitions; the median is
reported with each side's peak resident memory, and accuracies and per-item log-likelihoods
are compared. Usage:

    python benchmarks/bench_eval.py [--reps 3] [--batch-size 16] [--threads 2] [--model HF_FOLDER]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("OCCIFORGE_SHARED", REPO.parent / "shared")) / "data"


def build_model(folder: Path) -> Path:
    """A demo-sized random Llama with a BPE tokenizer trained on the shared monolingual text."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from occiforge.recipe import TokenizerConfig
    from occiforge.tokenizer.train import BOS, EOS, PAD, train_tokenizer

    texts = [json.loads(line)["text"] for f in sorted((SHARED / "mono").glob("*.jsonl")) for line in f.open(encoding="utf-8")]
    # the project's own byte-level BPE trainer (min_frequency 1: every pair may merge)
    fast = PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(texts, TokenizerConfig(vocab_size=4096, min_frequency=1)),
                                   bos_token=BOS, eos_token=EOS, pad_token=PAD)
    fast.save_pretrained(str(folder))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                      intermediate_size=256, max_position_embeddings=256, tie_word_embeddings=True, initializer_range=0.1,
                      bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(str(folder))
    return folder


def sources() -> list[str]:
    return [str(p) for p in sorted((SHARED / "mc").iterdir()) if p.is_dir()]


def peak_rss_mb() -> float:
    """This process's resident-memory high-water mark (VmHWM: unlike ru_maxrss, not inherited over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_occiforge(args: argparse.Namespace) -> dict:
    import torch

    import transformers  # noqa: F401 - imports are not timed, on either side
    from occiforge.eval.scorer import Scorer
    from occiforge.eval.suite import load, pose_all, score_mc
    from occiforge.eval.tasks import load_tasks

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, tok = load(args.model, "cpu")
    tasks = [t for src in sources() for t in load_tasks(src, shots=0)]
    posed = pose_all(tasks, 1234)
    t1 = time.perf_counter()
    table, samples = score_mc(Scorer(model, tok, batch_size=args.batch_size), tasks, posed)
    t2 = time.perf_counter()
    accs = {f"{task}_{lang}": [row["acc"], row["acc_norm"]] for task, per in table.items() for lang, row in per.items()}
    lls: dict[str, list[float]] = {}
    for s in samples:  # in each task's item order, as lm-eval's doc_id
        key = f"{s['task']}_{s['lang']}"
        lls[f"{key}#{sum(k.startswith(key + '#') for k in lls)}"] = s["loglikelihoods"]
    return {"seconds": t2 - t0, "scoring_seconds": t2 - t1, "items": len(samples), "acc": accs, "lls": lls}


def worker_lmeval(args: argparse.Namespace) -> dict:
    import lm_eval.models.huggingface  # noqa: F401 - imports are not timed, on either side
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    torch.set_num_threads(args.threads)
    names = sorted(p.stem for p in Path(args.tasks).glob("*.yaml"))
    tm = TaskManager(include_path=args.tasks, include_defaults=False)
    t0 = time.perf_counter()
    res = simple_evaluate(model="hf", model_args={"pretrained": args.model, "dtype": "float32"}, tasks=names, task_manager=tm,
                          batch_size=args.batch_size, device="cpu", log_samples=True, verbosity="ERROR")
    t2 = time.perf_counter()
    accs = {n: [res["results"][n]["acc,none"], res["results"][n]["acc_norm,none"]] for n in names}
    lls = {f"{n}#{s['doc_id']}": [r[0] for r in s["filtered_resps"]] for n in names for s in res["samples"][n]}
    return {"seconds": t2 - t0, "items": len(lls), "acc": accs, "lls": lls}


def run_worker(side: str, model: Path, tasks: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--model", str(model), "--tasks", str(tasks),
           "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(REPO), "TRANSFORMERS_VERBOSITY": "error"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{side} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def export(model: Path, folder: Path) -> None:
    from occiforge.cli import main

    args = ["eval", "--model", str(model), "--output", str(folder / "warmup.json"), "--export-lm-eval", str(folder / "tasks")]
    assert main(args + [a for s in sources() for a in ("--mc", s)]) == 0


def compare(ours: dict, theirs: dict) -> tuple[int, float]:
    """(task/language pairs whose accuracies differ, largest |log-likelihood| difference)."""
    differ = sum(ours["acc"][k] != theirs["acc"][k] for k in theirs["acc"])
    worst = max(abs(a - b) for k, v in theirs["lls"].items() for a, b in zip(v, ours["lls"][k], strict=True))
    return differ, worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", help="HF folder to use instead of the built random demo-sized model")
    ap.add_argument("--worker", choices=["occiforge", "lmeval"], help=argparse.SUPPRESS)
    ap.add_argument("--tasks", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        out = (worker_occiforge if args.worker == "occiforge" else worker_lmeval)(args)
        out["max_rss_mb"] = peak_rss_mb()
        print(json.dumps(out))
        return
    if not (SHARED / "mc").is_dir():
        print(f"skipped: {SHARED / 'mc'} not found")
        return
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else build_model(Path(tmp) / "model")
        export(model, Path(tmp))
        runs: dict[str, list[dict]] = {"occiforge": [], "lmeval": []}
        for _ in range(args.reps):
            for side in runs:
                runs[side].append(run_worker(side, model, Path(tmp) / "tasks", args))
    report(runs, args)


def report(runs: dict[str, list[dict]], args: argparse.Namespace) -> None:
    ours, theirs = runs["occiforge"], runs["lmeval"]
    items = ours[0]["items"]
    assert items == theirs[0]["items"], (items, theirs[0]["items"])
    t_ours, t_theirs = statistics.median(r["seconds"] for r in ours), statistics.median(r["seconds"] for r in theirs)
    differ, worst = compare(ours[0], theirs[0])
    print(f"items: {items} ({len(theirs[0]['acc'])} task x language pairs), batch {args.batch_size}, "
          f"{args.threads} threads, {args.reps} reps (median)")
    print(f"occiforge: {t_ours:6.2f} s  {items / t_ours:7.1f} items/s  (scoring alone "
          f"{statistics.median(r['scoring_seconds'] for r in ours):.2f} s)  peak RSS {max(r['max_rss_mb'] for r in ours):.0f} MB")
    print(f"lm-eval:   {t_theirs:6.2f} s  {items / t_theirs:7.1f} items/s  peak RSS {max(r['max_rss_mb'] for r in theirs):.0f} MB")
    best = min(r["seconds"] for r in theirs) / min(r["seconds"] for r in ours)
    print(f"speed-up: {t_theirs / t_ours:.1f}x (best run against best run: {best:.1f}x)   "
          f"accuracies differing: {differ}   max |ll diff|: {worst:.1e}")
    print("all runs (s): occiforge " + ", ".join(f"{r['seconds']:.2f}" for r in ours) + "; lm-eval " + ", ".join(f"{r['seconds']:.2f}" for r in theirs))
    if differ:
        raise SystemExit("accuracies differ from lm-eval")


if __name__ == "__main__":
    main()
