"""Resumable checkpoints in safetensors (never pickle): model, optimizer state, trainer state.

A checkpoint folder is written under a temporary name and renamed, so `latest/` is always
complete. Optimizer state is flattened to `state.<param index>.<name>` tensors plus the
param groups as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

LATEST = "latest"


def save(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    tmp = folder / f".{LATEST}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))
    opt = optimizer.state_dict()
    tensors = {
        f"state.{idx}.{name}": value.detach().contiguous().cpu() if torch.is_tensor(value) else torch.tensor(value)
        for idx, pstate in opt["state"].items()
        for name, value in pstate.items()
    }
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer_groups.json").write_text(json.dumps(opt["param_groups"]))
    (tmp / "trainer_state.json").write_text(json.dumps(state))
    final = folder / LATEST
    old = folder / f".{LATEST}.old"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def load_state(folder: Path) -> dict[str, Any] | None:
    path = folder / LATEST / "trainer_state.json"
    return json.loads(path.read_text()) if path.is_file() else None


def restore(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    ckpt = folder / LATEST
    load_model(model, str(ckpt / "model.safetensors"))
    flat = load_file(str(ckpt / "optimizer.safetensors"))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    groups = json.loads((ckpt / "optimizer_groups.json").read_text())
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return json.loads((ckpt / "trainer_state.json").read_text())
