"""The training loop: schedule, determinism, and exact resumption from safetensors checkpoints."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from transformers import LlamaConfig, LlamaForCausalLM

from occiforge import checkpoint
from occiforge.dist import DistInfo
from occiforge.errors import UserError
from occiforge.loop import Hooks, LoopSpec, lr_at, make_optimizer, train
from occiforge.recipe import OptimConfig


def _model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=32, max_position_embeddings=32, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg)


def _spec(steps: int = 10) -> LoopSpec:
    return LoopSpec(steps=steps, lr=1e-2, optim=OptimConfig(warmup_steps=2), grad_accum=2, precision="fp32",
                    save_every=3, log_every=1, fingerprint="fp-test")


# periodic streams: learnable, so the loss has somewhere to go
_STREAMS = (np.tile(np.arange(20, dtype=np.int64), 100), np.tile(np.arange(10, 40, dtype=np.int64), 30))


def _windows(key: int, n: int) -> torch.Tensor:
    """`n` rows of 17 tokens, random windows of the two streams (30/70), a pure function of `key`."""
    rng = np.random.default_rng([1, key])
    rows = []
    for which in rng.choice(2, size=n, p=[0.3, 0.7]):
        start = int(rng.integers(0, len(_STREAMS[which]) - 17 + 1))
        rows.append(_STREAMS[which][start : start + 17])
    return torch.from_numpy(np.stack(rows))


def _batches(step: int, micro: int) -> dict[str, torch.Tensor]:
    ids = _windows(step * 2 + micro, 4)
    return {"input_ids": ids, "labels": ids}


def test_schedule_warms_up_then_decays():
    spec = _spec(100)
    lrs = [lr_at(s, spec) for s in range(100)]
    assert lrs[0] == pytest.approx(5e-3) and lrs[1] == pytest.approx(1e-2) and lrs[2] == pytest.approx(1e-2)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    assert lrs[-1] == pytest.approx(1e-3, rel=1e-9)


@pytest.mark.parametrize("schedule", ["cosine", "linear", "wsd"])
@pytest.mark.parametrize("steps, warmup", [(100, 10), (7, 2), (3, 1)])
def test_every_decaying_schedule_ends_exactly_at_its_floor(schedule: str, steps: int, warmup: int):
    spec = _with(steps, optim=OptimConfig(warmup_steps=warmup, schedule=schedule, min_lr_ratio=0.1))
    lrs = [lr_at(s, spec) for s in range(steps)]
    assert lrs[-1] == 1e-2 * 0.1  # exactly the floor
    assert min(lrs) == pytest.approx(1e-3, rel=1e-9) and max(lrs) <= 1e-2 * (1 + 1e-9)


@pytest.mark.parametrize("schedule", ["cosine", "linear", "wsd", "constant"])
@pytest.mark.parametrize("warmup", [0, 20])
def test_a_one_step_run_trains_at_lr(schedule: str, warmup: int):
    """Even with min_lr_ratio 0 a one-step model is trained, not left unchanged."""
    spec = _with(1, optim=OptimConfig(warmup_steps=warmup, schedule=schedule, min_lr_ratio=0.0))
    assert lr_at(0, spec) == 1e-2


@pytest.mark.parametrize("schedule", ["cosine", "linear", "wsd"])
@pytest.mark.parametrize("steps", [2, 12, 21])
def test_a_warm_up_as_long_as_the_run_is_halved_so_that_the_schedule_still_decays(schedule: str, steps: int):
    """A 20-step warm-up (the default) in a run of 21 steps or fewer left no step to decay in: the run ended
    at its peak lr. It now warms up over half the run, reaches lr, and ends exactly at its floor."""
    optim = OptimConfig(warmup_steps=20, schedule=schedule, min_lr_ratio=0.1)
    spec = _with(steps, optim=optim)
    lrs = [lr_at(s, spec) for s in range(steps)]
    assert optim.warmup_for(steps) == (steps - 1) // 2
    assert lrs[-1] == 1e-2 * 0.1 and max(lrs) == pytest.approx(1e-2)
    assert optim.warmup_for(22) == 20 and lr_at(19, _with(22, optim=optim)) == pytest.approx(1e-2)  # room: as asked


def test_a_constant_schedule_with_a_warm_up_longer_than_the_run_reaches_lr_on_its_last_step():
    optim = OptimConfig(warmup_steps=20, schedule="constant")
    lrs = [lr_at(s, _with(12, optim=optim)) for s in range(12)]
    assert optim.warmup_for(12) == 11 and lrs[0] == pytest.approx(1e-2 / 11) and lrs[-2:] == [1e-2, 1e-2]


def test_interrupted_training_resumes_exactly(tmp_path: Path):
    straight = _model()
    train(straight, _batches, _spec(), tmp_path / "a")

    interrupted = _model()

    def kill_at_7(step: int, loss: float) -> None:
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(interrupted, _batches, _spec(), tmp_path / "b", on_step=kill_at_7)
    assert checkpoint.usable(tmp_path / "b", print)["step"] == 6
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


def test_a_head_saved_apart_from_its_embedding_is_rebuilt_apart_and_never_dropped(tmp_path: Path):
    """The checkpoint's config says how the weights are tied, not how the model's config says they were:
    a resume rebuilds an untied head, and a checkpoint weight the model has no place for is an error."""
    from occiforge.recipe import TrainConfig
    from occiforge.train.parallel import empty_model

    model = _model()  # tied by its config
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())  # as transformers loads a separate head
    spec = _with(2, grad_accum=1, save_every=1)
    train(model, _batches, spec, tmp_path)  # a checkpoint after step 1
    assert json.loads((tmp_path / "latest" / "config.json").read_text())["tie_word_embeddings"] is False
    rebuilt = empty_model(tmp_path / "latest", TrainConfig(), DistInfo.single())
    assert rebuilt.lm_head.weight is not rebuilt.model.embed_tokens.weight
    checkpoint.restore(tmp_path, rebuilt, make_optimizer(rebuilt, spec))
    tied = _model()
    with pytest.raises(UserError, match=r"holds weights this model has no place for \(model.lm_head.weight\)"):
        checkpoint.restore(tmp_path, tied, make_optimizer(tied, spec))


def test_checkpoint_of_another_run_is_not_resumed(tmp_path: Path):
    model = _model()
    with pytest.raises(KeyboardInterrupt):
        train(model, _batches, _spec(), tmp_path, on_step=lambda s, loss: (_ for _ in ()).throw(KeyboardInterrupt) if s == 4 else None)
    other = LoopSpec(**{**_spec().__dict__, "fingerprint": "changed-config"})
    messages: list[str] = []
    train(_model(), _batches, other, tmp_path, log=messages.append)
    assert len(messages) == 1 and "from another configuration" in messages[0] and "(step 3)" in messages[0]
    assert "resuming" not in messages[0] and "set aside as" in messages[0]
    assert (tmp_path.with_name(tmp_path.name + ".stale") / "latest" / "trainer_state.json").is_file()  # kept, not deleted


def test_resuming_on_another_number_of_ranks_is_refused(tmp_path: Path):
    """A row's place in the plan depends on the world size: resuming on another one would re-read or skip rows."""
    with pytest.raises(KeyboardInterrupt):
        train(_model(), _batches, _spec(), tmp_path, on_step=lambda s, loss: (_ for _ in ()).throw(KeyboardInterrupt) if s == 4 else None)
    path = tmp_path / "latest" / "trainer_state.json"
    state = json.loads(path.read_text())
    assert state["world_size"] == 1
    path.write_text(json.dumps({**state, "world_size": 2}))  # as a 2-rank run would have written it
    with pytest.raises(UserError, match=r"checkpoint .*latest was written by 2 ranks and this run has 1"):
        train(_model(), _batches, _spec(), tmp_path)
    assert checkpoint.usable(tmp_path, print)["step"] == 3  # kept, for a resume on 2 ranks


def test_training_lowers_the_loss(tmp_path: Path):
    history = train(_model(), _batches, _spec(30), tmp_path)
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]


# --- the loss is sum of token NLLs / target tokens of the whole optimizer step -------------------

_MASKED = [0, 3, 16, 9, 1, 12, 5, 17]  # -100 on the first k of 17 tokens: 16+14, 1+8, 16+5, 12+0 targets per pair


def _with(steps: int, **over: object) -> LoopSpec:
    return LoopSpec(**{**_spec(steps).__dict__, **over})


def _masked_rows(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """8 rows for `step` with unevenly masked labels (like SFT prompts); one row has no target at all."""
    ids = _windows(step, 8)
    labels = ids.clone()
    for row, k in enumerate(_MASKED):
        labels[row, :k] = -100
    return ids, labels


def _rows(step: int, lo: int, hi: int) -> dict[str, torch.Tensor]:
    ids, labels = _masked_rows(step)
    return {"input_ids": ids[lo:hi], "labels": labels[lo:hi]}


def _assert_same_params(a: torch.nn.Module, b: torch.nn.Module, atol: float) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=atol, rtol=0), f"{name}: {(p - q).abs().max()}"


def test_grad_accum_splits_of_a_masked_step_give_the_same_update(tmp_path: Path):
    whole, split = _model(), _model()
    train(whole, lambda step, micro: _rows(step, 0, 8), _with(2, grad_accum=1), tmp_path / "a")
    train(split, lambda step, micro: _rows(step, 2 * micro, 2 * micro + 2), _with(2, grad_accum=4), tmp_path / "b")
    _assert_same_params(whole, split, atol=1e-6)
    assert not all(torch.equal(p, q) for p, q in zip(_model().parameters(), whole.parameters()))  # it trained


def test_logged_loss_is_token_nll_sum_over_target_count(tmp_path: Path):
    model = _model()
    micros = [_rows(0, 0, 4), _rows(0, 4, 8)]
    with torch.no_grad():
        nll = [F.cross_entropy(model(input_ids=m["input_ids"]).logits[:, :-1].reshape(-1, 50),
                               m["labels"][:, 1:].reshape(-1), ignore_index=-100, reduction="sum") for m in micros]
    counts = [int((m["labels"][:, 1:] != -100).sum()) for m in micros]
    expected = float(sum(nll)) / sum(counts)
    seen: list[float] = []
    history = train(model, lambda step, micro: micros[micro], _with(1, grad_accum=2), tmp_path, on_step=lambda s, loss: seen.append(loss))
    assert seen[0] == pytest.approx(expected, abs=1e-6) and history[0]["loss"] == pytest.approx(expected, abs=1e-5)
    per_micro_mean = sum(float(n) / c for n, c in zip(nll, counts)) / 2  # the old formula, visibly different here
    assert abs(per_micro_mean - expected) > 1e-4  # 100x the tolerance above


def test_a_step_without_targets_trains_nothing_and_counts_no_tokens(tmp_path: Path):
    """Every label -100 (an SFT step of prompts only): loss 0 and zero gradients, not NaN, and 0 tokens/s."""
    model, before = _model(), _model()
    ids = _batches(0, 0)["input_ids"]
    spec = _with(2, grad_accum=1, log_every=1, optim=OptimConfig(warmup_steps=0, weight_decay=0.0))
    history = train(model, lambda step, micro: {"input_ids": ids, "labels": torch.full_like(ids, -100)}, spec, tmp_path)
    assert all(h["loss"] == 0.0 and h["grad_norm"] == 0.0 for h in history)
    assert history[1]["tokens_per_s"] == 0.0  # (the first step gives no throughput: it pays one-time costs)
    _assert_same_params(model, before, atol=0.0)


def test_unmasked_single_micro_batch_is_bit_identical_to_the_mean_loss(tmp_path: Path):
    """grad_accum=1 without masking, with the model's own loss, reproduces `model(**batch).loss` training bit for bit."""
    spec = _with(5, grad_accum=1, save_every=100, chunked_loss=False)
    new, old = _model(), _model()
    seen: list[float] = []
    train(new, _batches, spec, tmp_path, on_step=lambda s, loss: seen.append(loss))
    opt, old_losses = make_optimizer(old, spec), []
    for step in range(spec.steps):  # the loop as it was before sum/count
        for group in opt.param_groups:
            group["lr"] = lr_at(step, spec)
        loss = old(**_batches(step, 0)).loss
        loss.backward()
        old_losses.append(float(loss.detach()))
        torch.nn.utils.clip_grad_norm_(old.parameters(), spec.optim.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    assert seen == old_losses
    for (name, p), q in zip(new.named_parameters(), old.parameters()):
        assert torch.equal(p, q), name


def test_only_logged_steps_read_the_loss_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Reading a device value back stalls the GPU pipeline: the loop may do it once per logged step only.
    (Label counting reads CPU integer tensors, which never touch the device, so only float reads count.)"""
    reads: list[str] = []

    def counting(name: str):
        original = getattr(torch.Tensor, name)

        def read(self: torch.Tensor, *args: object) -> object:
            if self.is_floating_point() and sys._getframe(1).f_code.co_filename.endswith("loop.py"):
                reads.append(name)
            return original(self, *args)
        return read

    for name in ("__float__", "item", "tolist", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    history = train(_model(), _batches, _with(6, log_every=5, save_every=100), tmp_path)
    assert [h["step"] for h in history] == [0, 5] and len(reads) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA sync detection needs a GPU")
def test_unlogged_steps_never_synchronize_the_gpu(tmp_path: Path):
    def sync_debug(step: int, loss: float) -> None:
        torch.cuda.set_sync_debug_mode("error" if step == 0 else "default")  # steps 1 and 2 run with errors armed

    try:
        train(_model().cuda(), _batches, _with(4, log_every=100, save_every=100), tmp_path, on_step=sync_debug)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _rank_main(rank: int, world: int, store: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        model = _model()
        fully_shard(model, mesh=init_device_mesh("cpu", (world,)))  # gloo on CPU even where a GPU exists
        get_batch = lambda step, micro: _rows(step, 4 * rank + 2 * micro, 4 * rank + 2 * micro + 2)  # noqa: E731
        history = train(model, get_batch, _with(2, grad_accum=2, save_every=100), Path(out) / "ckpt", rank=rank)
        params = [p.full_tensor() for p in model.parameters()]
        if rank == 0:
            torch.save({"params": params, "history": history}, Path(out) / "result.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_two_ranks_with_unequal_target_counts_match_one_process(tmp_path: Path):
    """Rank 0 holds 39 targets a step, rank 1 33: the loss must still be global sum / global count."""
    mp.spawn(_rank_main, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    result = torch.load(tmp_path / "result.pt", weights_only=True)
    single = _model()
    history = train(single, lambda step, micro: _rows(step, 0, 8), _with(2, grad_accum=1, save_every=100), tmp_path / "one")
    assert [h["loss"] for h in result["history"]] == pytest.approx([h["loss"] for h in history], abs=1e-5)
    for (name, p), q in zip(single.named_parameters(), result["params"]):
        assert torch.allclose(p, q, atol=1e-6, rtol=0), name


def test_wsd_warms_up_holds_then_decays_over_its_last_fraction():
    spec = LoopSpec(**{**_spec(100).__dict__, "optim": OptimConfig(warmup_steps=10, schedule="wsd", decay_fraction=0.2,
                                                                   min_lr_ratio=0.1)})
    lrs = [lr_at(s, spec) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[9] == pytest.approx(1e-2)
    assert all(lr == pytest.approx(1e-2) for lr in lrs[9:80])  # as documented: the last 20% of the 100 steps decay
    assert all(a > b for a, b in zip(lrs[79:], lrs[80:])) and lrs[-1] == pytest.approx(1e-3)


def test_constant_schedule_and_every_model_rewarms_from_zero():
    spec = LoopSpec(**{**_spec(50).__dict__, "optim": OptimConfig(warmup_steps=5, schedule="constant")})
    assert [lr_at(s, spec) for s in (0, 4, 5, 49)] == pytest.approx([2e-3, 1e-2, 1e-2, 1e-2])
    assert OptimConfig().warmup_steps > 0  # the default re-warms every model, continued ones included


def test_models_trained_later_in_a_process_still_run_compiled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Every decoder layer of every model runs one function under activation checkpointing, so all share
    one cache of 8 compiled variants: an earlier model's validation shapes (each twice: layer 0's input
    requires grad) used it up, and a later model (packed rows: position_ids) trained uncompiled."""
    from occiforge.recipe import TrainConfig
    from occiforge.train import monitor, parallel

    calls = [0]

    def counting(gm: torch.fx.GraphModule, example_inputs: list) -> object:  # dynamo's eager backend, counted
        def run(*args: object) -> object:
            calls[0] += 1
            return gm.forward(*args)
        return run

    compile_ = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: compile_(self, backend=counting))
    cfg = TrainConfig(compile=True, activation_checkpointing=True)

    def model() -> torch.nn.Module:
        torch.manual_seed(0)
        m = LlamaForCausalLM(LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                                         num_attention_heads=2, num_key_value_heads=2))
        return parallel.parallelize(m, cfg, DistInfo.single())

    rng = np.random.default_rng(0)
    ids = [torch.from_numpy(rng.integers(0, 96, (2, 17))) for _ in range(4)]
    plain = lambda step, micro: {"input_ids": ids[step], "labels": ids[step]}  # noqa: E731
    packed = lambda step, micro: {**plain(step, micro), "position_ids": torch.tensor([[*range(7), *range(10)]] * 2)}  # noqa: E731
    rows = {"en": [(x, x) for x in rng.integers(0, 96, (3, 17))],
            "de": [(rng.integers(0, 96, n), rng.integers(0, 96, n)) for n in (9, 13, 17, 5, 11, 15, 7)]}
    spec = LoopSpec(steps=4, lr=1e-3, optim=OptimConfig(warmup_steps=1), grad_accum=1, precision="fp32",
                    save_every=100, log_every=100, fingerprint="x", val_every=1)
    validate, during = monitor.validation(rows, 2), []

    def watched(m: torch.nn.Module) -> dict[str, float]:
        before = calls[0]
        out = validate(m)
        during.append(calls[0] - before)
        return out

    train(model(), plain, spec, tmp_path / "a", hooks=Hooks(validate=watched))
    assert len(during) == 4 and not any(during), during  # validation runs uncompiled: no variant of its own
    calls[0] = 0
    train(model(), packed, spec, tmp_path / "b")
    assert calls[0] >= 4 * 4, calls  # each step's forward runs the 4 compiled layers
