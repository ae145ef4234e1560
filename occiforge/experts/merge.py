"""Merging experts that share a base into one dense model, one tensor at a time.

- linear: Σ wᵢ·θᵢ / Σ wᵢ (Wortsman et al. 2022, model soups).
- task arithmetic: θ_base + λ·Σ wᵢ·(θᵢ − θ_base) (Ilharco et al. 2023).
- TIES: trim each delta to its `density` largest magnitudes, elect a sign per parameter from
  the weighted deltas' sum, average the weighted deltas that agree with it (Yadav et al. 2023).

The arithmetic follows mergekit's definitions (its `normalize` and `lambda` included), so the
two agree to 1e-6 (tests/experts/test_merge.py); mergekit itself is only a dev dependency.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from occiforge.experts.tensors import ShardWriter, TensorFolder

# every file of a HF folder that is not weights: config, generation config, tokenizer
_WEIGHTS = (".safetensors", ".bin", ".pt", ".index.json")
NORMALIZE = {"linear": True, "task_arithmetic": False, "ties": True}  # mergekit's defaults


def linear(tensors: list[torch.Tensor], weights: list[float], normalize: bool = True) -> torch.Tensor:
    dtype = torch.float64 if tensors[0].dtype == torch.float64 else torch.float32
    out = torch.zeros_like(tensors[0], dtype=dtype)
    for t, w in zip(tensors, weights):
        out.add_(t.to(dtype), alpha=w)
    if normalize:
        out.div_(sum(weights))
    return out.to(tensors[0].dtype)


def trim(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the `density` fraction of entries largest in magnitude (at least one), zero the rest."""
    if density >= 1:
        return delta
    k = max(1, int(density * delta.numel()))
    keep = torch.argsort(delta.abs().reshape(-1).float(), descending=True)[:k]
    mask = torch.zeros(delta.numel(), dtype=delta.dtype)
    mask[keep] = 1
    return delta * mask.reshape_as(delta)


def task_arithmetic(base: torch.Tensor, tensors: list[torch.Tensor], weights: list[float], scale: float = 1.0,
                    normalize: bool = False, density: float = 1.0, elect_sign: bool = False) -> torch.Tensor:
    """Task arithmetic; with `density` < 1 and `elect_sign` it is TIES."""
    w = torch.tensor(weights, dtype=base.dtype).reshape(-1, *([1] * base.ndim))
    deltas = torch.stack([trim(t - base, density) for t in tensors]) * w
    if elect_sign:
        sign = deltas.sign()
        agree = sign == ((deltas.sum(dim=0) >= 0).to(base.dtype) * 2 - 1)
        mixed, divisor = (deltas * agree).sum(dim=0), (w * agree).sum(dim=0)
        divisor[divisor == 0] = 1
    else:
        mixed, divisor = deltas.sum(dim=0), w.sum(dim=0)
        divisor[divisor.abs() < 1e-8] = 1
    if normalize:
        mixed = mixed / divisor
    if scale != 1:
        mixed = mixed * scale
    return (base + mixed).to(base.dtype)


def merge_tensor(method: str, tensors: list[torch.Tensor], base: torch.Tensor | None, weights: list[float],
                 density: float, scale: float, normalize: bool) -> torch.Tensor:
    if method == "linear":
        return linear(tensors, weights, normalize)
    assert base is not None, "task arithmetic and TIES need a base"
    if method == "ties":
        return task_arithmetic(base, tensors, weights, scale, normalize, density, elect_sign=True)
    return task_arithmetic(base, tensors, weights, scale, normalize, density)


def copy_non_weights(src: Path, dst: Path) -> None:
    """Config, generation config and tokenizer files of a HF folder (no weights, no manifests)."""
    for f in src.iterdir():
        if f.is_file() and not f.name.endswith(_WEIGHTS) and f.name not in ("manifest.json", "train_log.json"):
            shutil.copy2(f, dst / f.name)


def merge_folders(method: str, experts: list[Path], out: Path, base: Path | None = None, weights: list[float] | None = None,
                  density: float = 1.0, scale: float = 1.0, normalize: bool | None = None,
                  max_shard_bytes: int = 2 * 1024**3) -> dict[str, Any]:
    """Merge HF folders (checked compatible by the caller) into `out`, one tensor at a time."""
    sources = [TensorFolder(p) for p in experts]
    base_src = TensorFolder(base) if base is not None else None
    weights = weights or [1.0] * len(experts)
    normalize = NORMALIZE[method] if normalize is None else normalize
    writer = ShardWriter(out, max_shard_bytes)
    for name in sources[0].names():
        tensors = [s.get(name) for s in sources]
        writer.add(name, merge_tensor(method, tensors, base_src.get(name) if base_src else None, weights, density, scale, normalize))
    writer.close()
    copy_non_weights(experts[0], out)
    return {"tensors": len(sources[0].names()), "normalize": normalize, "weights": weights}
