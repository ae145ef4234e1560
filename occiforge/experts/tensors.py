"""Safetensors folders read and written one tensor at a time, and the checks experts must pass.

A merge or a mixture never holds a whole model in memory: `TensorFolder` opens each expert's
safetensors files lazily (one tensor at a time), and `ShardWriter` writes the output in shards
of at most `max_shard_bytes`, with the HF index when there is more than one. `check_experts`
refuses experts of different architectures, sizes, vocabularies or tokenizers with one line
naming the two models, before anything is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from occiforge.errors import UserError
from occiforge.lm import load_config, load_tokenizer

SINGLE, INDEX = "model.safetensors", "model.safetensors.index.json"
# what must agree between experts for their tensors to line up
ARCH_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
             "intermediate_size", "vocab_size", "hidden_act", "tie_word_embeddings", "rms_norm_eps", "rope_parameters",
             "rope_theta", "max_position_embeddings", "attention_bias", "mlp_bias")


class TensorFolder:
    """The tensors of a HF safetensors folder (one file or an index of shards), read one at a time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if (self.path / INDEX).is_file():
            weight_map = json.loads((self.path / INDEX).read_text())["weight_map"]
            self.files = {name: self.path / f for name, f in weight_map.items()}
        elif (self.path / SINGLE).is_file():
            with safe_open(str(self.path / SINGLE), "pt") as f:
                self.files = {name: self.path / SINGLE for name in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        else:
            raise UserError(f"{self.path}: no {SINGLE} or {INDEX} (only safetensors checkpoints are read)")
        self._open: dict[Path, Any] = {}

    def names(self) -> list[str]:
        return list(self.files)

    def _handle(self, name: str) -> Any:
        file = self.files[name]
        if file not in self._open:
            self._open[file] = safe_open(str(file), "pt")
        return self._open[file]

    def get(self, name: str) -> torch.Tensor:
        return self._handle(name).get_tensor(name)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._handle(name).get_slice(name).get_shape())


class ShardWriter:
    """Tensors to `model.safetensors`, or to numbered shards plus the HF index past `max_shard_bytes`."""

    def __init__(self, folder: Path, max_shard_bytes: int = 2 * 1024**3):
        self.folder, self.max = folder, max_shard_bytes
        folder.mkdir(parents=True, exist_ok=True)
        self.buffer: dict[str, torch.Tensor] = {}
        self.size = 0
        self.shards: list[tuple[str, list[str]]] = []

    def add(self, name: str, tensor: torch.Tensor) -> None:
        self.buffer[name] = tensor.contiguous()
        self.size += tensor.numel() * tensor.element_size()
        if self.size >= self.max:
            self._flush()

    def _flush(self) -> None:
        if self.buffer:
            file = f".shard-{len(self.shards):05d}.safetensors"
            save_file(self.buffer, str(self.folder / file), metadata={"format": "pt"})
            self.shards.append((file, list(self.buffer)))
            self.buffer, self.size = {}, 0

    def close(self) -> None:
        self._flush()
        if len(self.shards) == 1:
            os.replace(self.folder / self.shards[0][0], self.folder / SINGLE)
            return
        weight_map: dict[str, str] = {}
        for i, (file, names) in enumerate(self.shards):
            final = f"model-{i + 1:05d}-of-{len(self.shards):05d}.safetensors"
            os.replace(self.folder / file, self.folder / final)
            weight_map.update({name: final for name in names})
        (self.folder / INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2))


def _arch(path: Path) -> dict[str, Any]:
    cfg = load_config(path).to_dict()
    return {k: cfg.get(k) for k in ARCH_KEYS}


def check_experts(what: str, paths: dict[str, Path]) -> dict[str, Any]:
    """One architecture, one set of tensor names and shapes, one tokenizer for every model of
    `paths` (name -> folder); otherwise a UserError naming the first two that differ. Returns
    the shared architecture fields."""
    names = list(paths)
    first = names[0]
    arch = {name: _arch(paths[name]) for name in names}
    for name in names[1:]:
        if diff := [k for k in ARCH_KEYS if arch[name][k] != arch[first][k]]:
            k = diff[0]
            raise UserError(f"{what}: {first} and {name} differ in architecture ({k}: {arch[first][k]} vs {arch[name][k]}); "
                            "experts must share one architecture and size")
    folders = {name: TensorFolder(paths[name]) for name in names}
    shapes0 = {k: folders[first].shape(k) for k in folders[first].names()}
    for name in names[1:]:
        shapes = {k: folders[name].shape(k) for k in folders[name].names()}
        if shapes != shapes0:
            odd = sorted(set(shapes) ^ set(shapes0)) or [k for k in shapes0 if shapes[k] != shapes0[k]]
            raise UserError(f"{what}: {first} and {name} have different tensors (first: {odd[0]})")
    vocab0 = load_tokenizer(paths[first]).get_vocab()
    for name in names[1:]:
        if load_tokenizer(paths[name]).get_vocab() != vocab0:
            raise UserError(f"{what}: {first} and {name} have different tokenizers; experts must share one tokenizer "
                            "(the same vocabulary, token for token)")
    return arch[first]
