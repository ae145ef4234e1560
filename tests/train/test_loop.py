"""The training loop: schedule, determinism, and exact resumption from safetensors checkpoints."""

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from occiforge.recipe import OptimConfig
from occiforge.train import checkpoint
from occiforge.train.loop import LoopSpec, lr_at, train
from occiforge.train.sampler import MixtureSampler


def _model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=32, max_position_embeddings=32, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg)


def _spec(steps: int = 10) -> LoopSpec:
    return LoopSpec(steps=steps, lr=1e-2, optim=OptimConfig(warmup_steps=2), grad_accum=2, precision="fp32",
                    save_every=3, log_every=1, fingerprint="fp-test")


def _sampler() -> MixtureSampler:
    # periodic streams: learnable, so the loss has somewhere to go
    streams = {"en": np.tile(np.arange(20, dtype=np.uint16), 100), "de": np.tile(np.arange(10, 40, dtype=np.uint16), 30)}
    return MixtureSampler(streams, {"en": 0.3, "de": 0.7}, seq_len=16, seed=1)


def _batches(step: int, micro: int) -> dict[str, torch.Tensor]:
    ids, _ = _sampler().batch(step * 2 + micro, 4)
    return {"input_ids": ids, "labels": ids}


def test_schedule_warms_up_then_decays():
    spec = _spec(100)
    lrs = [lr_at(s, spec) for s in range(100)]
    assert lrs[0] == pytest.approx(5e-3) and lrs[1] == pytest.approx(1e-2)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    assert lrs[-1] == pytest.approx(1e-3, rel=0.05)


def test_sampler_is_a_function_of_step_and_follows_mixture():
    a, langs = _sampler().batch(5, 400)
    b, _ = _sampler().batch(5, 400)
    assert torch.equal(a, b) and not torch.equal(a, _sampler().batch(6, 400)[0])
    assert a.shape == (400, 17)
    assert 0.6 < langs.count("de") / 400 < 0.8


def test_interrupted_training_resumes_exactly(tmp_path: Path):
    straight = _model()
    train(straight, _batches, _spec(), tmp_path / "a")

    interrupted = _model()

    def kill_at_7(step: int, loss: float) -> None:
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(interrupted, _batches, _spec(), tmp_path / "b", on_step=kill_at_7)
    assert checkpoint.load_state(tmp_path / "b")["step"] == 6
    files = list((tmp_path / "b" / "latest").iterdir())
    assert {p.suffix for p in files} == {".safetensors", ".json"}  # nothing that would need unpickling
    assert {"optimizer_groups.json", "trainer_state.json"} <= {p.name for p in files}

    resumed = _model()  # a fresh process would start from the init weights again
    messages: list[str] = []
    history = train(resumed, _batches, _spec(), tmp_path / "b", log=messages.append)
    assert messages and "resuming from step 6" in messages[0]
    assert [h["step"] for h in history] == list(range(10))
    for (name, p), q in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.allclose(p, q, atol=1e-6), name


def test_checkpoint_of_another_run_is_not_resumed(tmp_path: Path):
    model = _model()
    with pytest.raises(KeyboardInterrupt):
        train(model, _batches, _spec(), tmp_path, on_step=lambda s, loss: (_ for _ in ()).throw(KeyboardInterrupt) if s == 4 else None)
    other = LoopSpec(**{**_spec().__dict__, "fingerprint": "changed-config"})
    messages: list[str] = []
    train(_model(), _batches, other, tmp_path, log=messages.append)
    assert messages == []


def test_training_lowers_the_loss(tmp_path: Path):
    history = train(_model(), _batches, _spec(30), tmp_path)
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
