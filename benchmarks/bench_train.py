"""occiforge's training loop versus `transformers.Trainer` and a bare PyTorch loop, on CPU.

Same tiny Llama (hidden 256, 4 layers, 4 heads, MLP 688, vocabulary 8192, tied embeddings,
seeded), same rows (the demo corpus tokenized with an 8192-token BPE trained by occiforge's own
helpers, cut into rows of 256), batch 8, fp32, AdamW (betas 0.9/0.95, no weight decay), gradient
clipping at 1.0, the same number of optimizer steps. Every side runs torch's fused AdamW kernel: it is
the Trainer's own default (`optim="adamw_torch_fused"` for torch >= 2.8, left unset here) and what
occiforge's loop uses; the bare loop asks for it, so that it stays the limit. Each side runs in its own process, timed from
the first step to the last (imports and model build excluded; wall and CPU time), alternating sides, several
repetitions; medians are reported with each side's peak resident memory (VmHWM). Usage:

    python benchmarks/bench_train.py [--reps 3] [--steps 20] [--threads 2] [--sft]

`--sft`: the same comparison on instruction tuning rows (the demo's instruction pairs in ChatML, loss on
the answers only, the same labels for every side).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEQ, BATCH, VOCAB = 256, 8, 8192
# "occiforge" runs as the CLI runs it (occiforge.hostmem keeps freed memory mapped); "occiforge-system-malloc"
# is the same loop with the allocator as the OS set it, to show what that setting is worth
SIDES = ("occiforge", "occiforge-system-malloc", "trainer", "bare")


def _texts(folder: str) -> list[dict]:
    files = sorted((REPO / "occiforge" / "demo" / folder).glob("*.jsonl"))
    return [json.loads(line) for f in files for line in f.open(encoding="utf-8")]


def make_rows(path: Path, steps: int, sft: bool = False) -> None:
    """Rows of SEQ tokens, concatenated and cut, as `{ids, labels}` in an .npz. Text: the demo corpus, every
    token a target. `sft`: the demo's instruction pairs rendered in ChatML (the tokenizer with ChatML
    added, 8192 ids at most), targets on the answers only: the Trainer and the bare loop get the same
    labels, as a user of either would give them (-100 on prompts)."""
    import tempfile

    import numpy as np

    from occiforge.recipe import TokenizerConfig
    from occiforge.tokenizer.train import train_tokenizer

    texts = [r["text"] for r in _texts("corpus")]
    tok = train_tokenizer(texts, TokenizerConfig(vocab_size=VOCAB - 2 if sft else VOCAB, min_frequency=1))
    if not sft:
        ids = np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in tok.encode_batch(texts)])
        labels = ids
    else:
        from occiforge.chat import encode, to_messages, with_template
        from occiforge.lm import load_tokenizer
        from occiforge.tokenizer.train import save_hf

        with tempfile.TemporaryDirectory() as tmp:
            save_hf(tok, Path(tmp))
            chat = with_template(load_tokenizer(tmp), "chatml", "bench")
        assert len(chat) <= VOCAB, len(chat)
        pairs = [encode(chat, to_messages(r, "messages", "bench"), "bench") for r in _texts("sft")]
        ids = np.concatenate([np.asarray(i, dtype=np.int64) for i, _ in pairs])
        labels = np.where(np.concatenate([np.asarray(m, dtype=bool) for _, m in pairs]), ids, -100)
    need = steps * BATCH * SEQ  # repeated if the text is shorter than the run
    np.savez(path, ids=np.resize(ids, need).reshape(-1, SEQ), labels=np.resize(labels, need).reshape(-1, SEQ))


def model():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                      intermediate_size=688, max_position_embeddings=SEQ, tie_word_embeddings=True)
    m = LlamaForCausalLM(cfg)
    m.config.use_cache = False
    return m


def _clock() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads): on a shared machine CPU time is the fairer figure."""
    return time.perf_counter(), time.process_time()


def _since(t0: tuple[float, float]) -> tuple[float, float]:
    t1 = _clock()
    return t1[0] - t0[0], t1[1] - t0[1]


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_side(side: str, rows_path: Path, steps: int, threads: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    if side == "occiforge":
        from occiforge import hostmem

        assert hostmem.keep_freed_memory()
    saved = np.load(rows_path)
    rows, targets = torch.from_numpy(saved["ids"]), torch.from_numpy(saved["labels"])
    m = model()
    losses: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        if side.startswith("occiforge"):
            from occiforge.loop import LoopSpec, train
            from occiforge.recipe import OptimConfig

            spec = LoopSpec(steps=steps, lr=1e-3, optim=OptimConfig(warmup_steps=2, schedule="cosine"), grad_accum=1,
                            precision="fp32", save_every=10**9, log_every=10, fingerprint="bench")

            def get_batch(step: int, micro: int) -> dict:
                at = slice(step * BATCH, (step + 1) * BATCH)
                return {"input_ids": rows[at], "labels": targets[at]}

            t0 = _clock()
            hist = train(m, get_batch, spec, Path(tmp) / "ckpt")
            elapsed = _since(t0)
            losses = [h["loss"] for h in hist]
        elif side == "trainer":
            from transformers import Trainer, TrainingArguments, default_data_collator

            data = [{"input_ids": r, "labels": t} for r, t in zip(rows, targets)]
            args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=BATCH, max_steps=steps, learning_rate=1e-3,
                                     lr_scheduler_type="cosine", warmup_steps=2, weight_decay=0.0, adam_beta1=0.9,
                                     adam_beta2=0.95, max_grad_norm=1.0, logging_steps=10, save_strategy="no", report_to=[],
                                     use_cpu=True, dataloader_num_workers=0, seed=0, disable_tqdm=True)
            trainer = Trainer(model=m, args=args, train_dataset=data, data_collator=default_data_collator)
            trainer.train_dataloader_shuffle = False
            assert args.optim == "adamw_torch_fused", args.optim  # the Trainer's default optimizer, as its users get it
            t0 = _clock()
            trainer.train()
            elapsed = _since(t0)
            losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        else:
            opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0, fused=True)
            m.train()
            t0 = _clock()
            for step in range(steps):
                at = slice(step * BATCH, (step + 1) * BATCH)
                loss = m(input_ids=rows[at], labels=targets[at]).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                if step % 10 == 0 or step == steps - 1:
                    losses.append(float(loss))
            elapsed = _since(t0)
    return {"side": side, "seconds": elapsed[0], "cpu_seconds": elapsed[1], "peak_rss_mb": peak_rss_mb(), "losses": losses}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--side", choices=SIDES)
    ap.add_argument("--rows")
    ap.add_argument("--sft", action="store_true", help="instruction pairs in ChatML, targets on the answers only")
    a = ap.parse_args()
    if a.side:
        print(json.dumps(run_side(a.side, Path(a.rows), a.steps, a.threads)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        rows = Path(tmp) / "rows.npz"
        make_rows(rows, a.steps, a.sft)
        if a.sft:
            import numpy as np

            print(f"instruction rows: {float((np.load(rows)['labels'][:, 1:] != -100).mean()):.0%} of positions are targets")
        results: dict[str, list[dict]] = {s: [] for s in SIDES}
        for rep in range(a.reps):
            order = SIDES[rep % len(SIDES):] + SIDES[: rep % len(SIDES)]  # alternate who goes first
            for side in order:
                out = subprocess.run([sys.executable, __file__, "--side", side, "--rows", str(rows), "--steps", str(a.steps),
                                      "--threads", str(a.threads)], cwd=REPO, capture_output=True, text=True, check=True)
                res = json.loads(out.stdout.strip().splitlines()[-1])
                results[side].append(res)
                print(f"rep {rep} {side}: {res['seconds']:.2f} s wall, {res['cpu_seconds']:.2f} s CPU, peak RSS {res['peak_rss_mb']:.0f} MB, losses {res['losses']}",
                      flush=True)
    med = {s: statistics.median(r["seconds"] for r in results[s]) for s in SIDES}
    cpu = {s: statistics.median(r["cpu_seconds"] for r in results[s]) for s in SIDES}
    rss = {s: statistics.median(r["peak_rss_mb"] for r in results[s]) for s in SIDES}
    print(f"\n{a.steps} optimizer steps of {BATCH} x {SEQ} tokens, {a.threads} threads, median of {a.reps}")
    print("| side | wall s | CPU s | tokens per CPU-second | peak RSS |\n|---|---|---|---|---|")
    for s in SIDES:
        print(f"| {s} | {med[s]:.2f} | {cpu[s]:.2f} | {a.steps * BATCH * SEQ / cpu[s]:,.0f} | {rss[s]:.0f} MB |")
    for name, d in (("wall", med), ("CPU", cpu)):
        for ours in SIDES[:2]:
            print(f"{name}: {ours} {d['trainer'] / d[ours]:.2f}x the Trainer's speed, {d['bare'] / d[ours]:.2f} of the bare loop's")
    # the machine's speed drifts between repetitions: the ratio within each repetition (sides run back to back)
    paired = [t["seconds"] / o["seconds"] for t, o in zip(results["trainer"], results["occiforge"])]
    print(f"paired (wall, per repetition): occiforge {', '.join(f'{x:.2f}' for x in paired)}x the Trainer, "
          f"median {statistics.median(paired):.2f}")


if __name__ == "__main__":
    main()
