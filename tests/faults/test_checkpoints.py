"""Damaged and failed checkpoints: set aside and the previous one used; a failed write leaves the last whole one."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from occiforge import checkpoint
from occiforge.errors import UserError


def _model_and_opt() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=32, max_position_embeddings=32))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(input_ids=torch.arange(8)[None], labels=torch.arange(8)[None]).loss.backward()
    opt.step()
    return model, opt


def _save(folder: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int) -> None:
    checkpoint.save(folder, model, opt, {"fingerprint": "fp", "step": step, "history": []})


def test_damaged_latest_is_set_aside_and_previous_used(tmp_path: Path):
    model, opt = _model_and_opt()
    folder = tmp_path / ".m.ckpt"
    _save(folder, model, opt, 10)
    _save(folder, model, opt, 20)
    assert checkpoint.damage(folder / checkpoint.LATEST) is None
    shard = next((folder / checkpoint.LATEST).glob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:100])  # cut short
    said: list[str] = []
    state = checkpoint.usable(folder, said.append)
    assert state is not None and state["step"] == 10  # the one before
    assert len(said) == 1 and "is damaged" in said[0] and "set aside" in said[0]
    aside = list(tmp_path.glob(".m.ckpt.latest.damaged-*"))
    assert len(aside) == 1 and (aside[0] / shard.name).stat().st_size == 100  # kept, not deleted
    checkpoint.restore(folder, *_model_and_opt())  # and it loads

    for name in (checkpoint.LATEST,):
        (folder / name / "trainer_state.json").write_text("{ not json")
    assert checkpoint.usable(folder, said.append) is None  # nothing whole left: start from scratch
    assert "unreadable" in said[-1]


def test_a_failed_write_keeps_the_last_whole_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    model, opt = _model_and_opt()
    folder = tmp_path / ".m.ckpt"
    _save(folder, model, opt, 10)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.dcp, "save", disk_full)
    with pytest.raises(UserError, match=r"cannot write .*No space left on device.*latest is intact"):
        _save(folder, model, opt, 20)
    assert checkpoint.damage(folder / checkpoint.LATEST) is None
    assert checkpoint.usable(folder, print)["step"] == 10
