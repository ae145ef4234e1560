"""Run a suite on one model: bits per byte, multiple choice, generation; data-parallel over ranks.

Under torchrun every rank loads the model, scores every `world_size`-th request and the results
are gathered, so all ranks return the same tables (rank 0 writes them). Few-shot prompts are
seeded per item, so they do not depend on the number of ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

import occiforge.dist
from occiforge.errors import UserError
from occiforge.eval.bpb import bits_per_byte
from occiforge.eval.metrics import aggregate, item_metrics
from occiforge.eval.scorer import Scorer
from occiforge.eval.tasks import TARGET_DELIMITER, Posed, TaskData, pose

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# -- ranks -----------------------------------------------------------------------------------
_PARALLEL = False  # set by init_distributed: recipe stages run on rank 0 alone and must not gather


def init_distributed() -> None:
    """Join the process group torchrun describes (gloo on CPU, nccl on GPU) and shard the work."""
    global _PARALLEL
    _PARALLEL = occiforge.dist.init().world_size > 1


def finish_distributed() -> None:
    global _PARALLEL
    if _PARALLEL and dist.is_initialized():
        dist.destroy_process_group()
    _PARALLEL = False


def world() -> tuple[int, int]:
    """(rank, world size) of the data-parallel evaluation; (0, 1) unless init_distributed joined."""
    if _PARALLEL and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (just [obj] when alone)."""
    _, size = world()
    if size == 1:
        return [obj]
    out: list[Any] = [None] * size
    dist.all_gather_object(out, obj)
    return out


# -- model -----------------------------------------------------------------------------------
def default_device() -> str:
    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()}"
    return "cpu"


def load(path: str, device: str | None = None, dtype: str = "float32") -> tuple[Any, Any]:
    """A causal LM and its tokenizer from a HF folder or hub id; one-line UserErrors otherwise."""
    from occiforge.lm import load_causal_lm, load_tokenizer

    local = Path(path).expanduser()
    if not local.exists() and (path.startswith((".", "/", "~")) or path.count("/") > 1):
        raise UserError(f"{path}: model folder not found")
    model = load_causal_lm(str(local) if local.exists() else path, DTYPES[dtype])
    tok = load_tokenizer(str(local) if local.exists() else path)
    return model.to(device or default_device()).eval(), tok


# -- multiple choice -------------------------------------------------------------------------
def pose_all(tasks: Sequence[TaskData], seed: int) -> dict[tuple[str, str], list[Posed]]:
    """Every task's items as the prompts the model sees (few-shot examples included)."""
    return {(t.name, t.lang): pose(t, seed) for t in tasks}


def score_mc(scorer: Scorer, tasks: Sequence[TaskData],
             posed: dict[tuple[str, str], list[Posed]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """({task: {lang: {acc, acc_norm, n, truncated, ...}}}, per-item samples) over all ranks;
    `posed` is `pose_all(tasks, seed)`."""
    flat = [(key, i, p) for key, ps in posed.items() for i, p in enumerate(ps)]
    rank, size = world()
    mine = flat[rank::size]
    scored = scorer.loglikelihoods([(p.context, [TARGET_DELIMITER + c for c in p.choices]) for _, _, p in mine])
    local = [(key, i, lls, cut) for (key, i, _), lls, cut in zip(mine, scored.loglikelihoods, scored.truncated, strict=True)]
    found = {(key, i): (lls, cut) for part in gather(local) for key, i, lls, cut in part}
    by_key = {(t.name, t.lang): t for t in tasks}
    table: dict[str, Any] = {}
    samples = []
    for (name, lang), ps in posed.items():
        rows, cut_count = [], 0
        for i, p in enumerate(ps):
            lls, cut = found[(name, lang), i]
            rows.append(item_metrics(lls, p.choices, p.item.answer, p.item.labels))
            cut_count += cut
            samples.append({"task": name, "lang": lang, "id": p.item.id, "answer": p.item.answer, "loglikelihoods": lls, **rows[-1]})
        task = by_key[name, lang]
        table.setdefault(name, {})[lang] = {**aggregate(rows), "truncated": cut_count, "fewshot": task.fewshot,
                                            "prompt": task.prompt, "version": task.template.version}
    return table, samples


# -- bits per byte ---------------------------------------------------------------------------
def score_bpb(model: Any, tok: Any, texts: dict[str, list[str]], max_len: int, batch_size: int = 8) -> dict[str, dict[str, float]]:
    """Bits per byte per language, each rank taking every world_size-th document."""
    rank, size = world()
    mine = {lang: bits_per_byte(model, tok, docs[rank::size], max_len, batch_size) if docs[rank::size] else None
            for lang, docs in texts.items()}
    out = {}
    gathered = gather(mine)  # one collective for all languages
    for lang in texts:
        parts = [p[lang] for p in gathered if p[lang] is not None]
        n_bytes = sum(p["bytes"] for p in parts)
        out[lang] = {"bpb": sum(p["bpb"] * p["bytes"] for p in parts) / max(n_bytes, 1), "bytes": n_bytes,
                     "tokens": sum(p["tokens"] for p in parts), "documents": sum(p["documents"] for p in parts)}
    return out
