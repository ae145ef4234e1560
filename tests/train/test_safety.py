"""What must never happen in training: a checkpoint of non-finite weights, a wrong step in the
diverged error, a resume that reports the wrong step, data of another order or world size reused,
throughput that counts validation time or padding, a signal outside the loop killing the stage."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from rich.console import Console
from safetensors.torch import load_file

from occiforge.context import Context, hms
from occiforge.dist import DistInfo
from occiforge.errors import Stopped, UserError
from occiforge.loop import Hooks, LoopSpec, _Meter, _target_count, train
from occiforge.recipe import OptimConfig, validate_tree
from occiforge.train import monitor, stage
from occiforge.train.trainer import RunClock
from tests.conftest import tiny_tree
from tests.train.test_loop import _batches, _model, _rows


def _spec(steps: int = 20, **over: object) -> LoopSpec:
    base = {"steps": steps, "lr": 1e-2, "optim": OptimConfig(warmup_steps=1), "grad_accum": 2, "precision": "fp32",
            "save_every": 100, "log_every": 10, "fingerprint": "safe"}
    return LoopSpec(**{**base, **over})  # type: ignore[arg-type]


def _poison_after(model: torch.nn.Module, at: int):
    def on_step(step: int, loss: float) -> None:
        if step == at:
            with torch.no_grad():
                model.model.norm.weight.fill_(float("nan"))
    return on_step


def _all_finite(ckpt: Path) -> bool:
    tensors = {k: v for f in ckpt.glob("*.safetensors") for k, v in load_file(f).items()}
    return bool(tensors) and all(torch.isfinite(v).all() for v in tensors.values())


def test_an_infinite_gradient_with_a_finite_loss_writes_no_checkpoint(tmp_path: Path):
    model, now = _model(), {"step": 0}
    model.model.norm.weight.register_hook(lambda g: g * float("inf") if now["step"] == 5 else g)
    with pytest.raises(UserError, match=r"gradient norm is inf at step 5: .*last good checkpoint \(step 3\)"):
        train(model, _batches, _spec(save_every=3), tmp_path, on_step=lambda step, loss: now.update(step=step + 1))
    state = json.loads((tmp_path / "latest" / "trainer_state.json").read_text())
    assert state["step"] == 3 and _all_finite(tmp_path / "latest")  # the step-6 save was refused
    assert not (tmp_path / "previous").exists()  # and `latest` was not rotated away


def test_the_error_names_the_first_bad_step_between_logged_steps(tmp_path: Path):
    model = _model()
    with pytest.raises(UserError, match=r"not finite from step 3 on \(loss nan at step 10\)"):
        train(model, _batches, _spec(), tmp_path, on_step=_poison_after(model, 2))


def _poisoned_then_stopped(model, after: int, stop_at: int):
    """(on_step, hooks): the weights turn NaN after step `after`, a SIGTERM arrives at step `stop_at`."""
    now, poison = {"step": 0}, _poison_after(model, after)

    def on_step(step: int, loss: float) -> None:
        now["step"] = step
        poison(step, loss)

    return on_step, Hooks(should_stop=lambda: now["step"] == stop_at, stop_reason=lambda: ("stopped by SIGTERM", 0))


def test_a_stop_after_the_weights_went_nan_writes_nothing_and_fails(tmp_path: Path):
    model = _model()
    on_step, hooks = _poisoned_then_stopped(model, 2, 4)
    with pytest.raises(UserError, match=r"from step 3 on .*no checkpoint was written"):
        train(model, _batches, _spec(), tmp_path, on_step=on_step, hooks=hooks)
    assert not (tmp_path / "latest").exists()


def test_a_stop_right_after_the_weights_went_nan_is_caught_by_the_weights(tmp_path: Path):
    """The step's loss and gradient were finite; the weights are not (an update that overflowed): no save."""
    model = _model()
    on_step, hooks = _poisoned_then_stopped(model, 4, 4)
    with pytest.raises(UserError, match=r"the weights are not finite after step 4"):
        train(model, _batches, _spec(save_every=3), tmp_path, on_step=on_step, hooks=hooks)
    assert json.loads((tmp_path / "latest" / "trainer_state.json").read_text())["step"] == 3


def test_a_finite_stop_still_writes_its_checkpoint(tmp_path: Path):
    now = {"step": 0}
    hooks = Hooks(should_stop=lambda: now["step"] == 4, stop_reason=lambda: ("stopped by SIGTERM", 0))
    with pytest.raises(Stopped, match="checkpoint at step 5 written"):
        train(_model(), _batches, _spec(), tmp_path, on_step=lambda s, loss: now.update(step=s), hooks=hooks)
    assert _all_finite(tmp_path / "latest")


def test_the_resume_step_is_the_one_resumed_from_not_the_one_in_latest(tmp_path: Path):
    def kill_at_7(step: int, loss: float) -> None:
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_model(), _batches, _spec(10, save_every=3), tmp_path / "ckpt", on_step=kill_at_7)
    shard = next((tmp_path / "ckpt" / "latest").glob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:100])  # latest (step 6) damaged: previous (step 3) is used
    seen: list[int] = []
    history = train(_model(), _batches, _spec(10, save_every=3), tmp_path / "ckpt", hooks=Hooks(on_resume=seen.append))
    assert seen == [3] and [h["step"] for h in history] == [0, 9]  # no step logged twice

    seen.clear()
    train(_model(), _batches, _spec(10, fingerprint="other"), tmp_path / "ckpt", hooks=Hooks(on_resume=seen.append))
    assert seen == [0]


def test_train_log_drops_records_from_the_actual_resume_step(tmp_path: Path):
    log = monitor.TrainLog(tmp_path, 0, tensorboard=False)
    for step in range(7):
        log({"step": step, "loss": 1.0})
    resumed = monitor.TrainLog(tmp_path, 6, tensorboard=False)  # what `latest` would have said
    resumed.start = 3  # what the loop reports after falling back to `previous`
    resumed({"step": 3, "loss": 1.0})
    assert [json.loads(x)["step"] for x in (tmp_path / monitor.LOG_FILE).read_text().splitlines()] == [0, 1, 2, 3]


def test_a_log_line_cut_short_by_a_kill_is_dropped_on_resume(tmp_path: Path):
    """A SIGKILL (or a full disk) mid-append left half a line: the resume failed on it with a traceback."""
    log = monitor.TrainLog(tmp_path, 0, tensorboard=False)
    for step in range(4):
        log({"step": step, "loss": 1.0})
    with open(tmp_path / monitor.LOG_FILE, "a") as f:
        f.write('{"step": 4, "loss": 3.')
    monitor.TrainLog(tmp_path, 3, tensorboard=False)({"step": 3, "loss": 2.0})
    lines = [json.loads(x) for x in (tmp_path / monitor.LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in lines] == [0, 1, 2, 3] and lines[-1]["loss"] == 2.0


def test_run_clock_leaves_out_the_steps_a_resume_skips():
    clock = RunClock(100)
    clock.skip(90)  # resumed at step 90: 10 steps to run
    clock.t0 -= 10.0  # 10 s for the first step after the resume
    assert clock.tick() == hms(90)


def test_throughput_counts_target_tokens_and_leaves_out_paused_time():
    meter = _Meter(torch.device("cpu"), 1)
    micros = [_rows(0, 0, 4), _rows(0, 4, 8)]  # masked rows: 39 + 33 targets of 8 x 17 processed tokens
    meter.count(micros, _target_count(micros, torch.device("cpu"), 1))  # the loop's one count of the step's targets
    assert int(meter.tokens) == 72 and meter.processed == 8 * 17
    with meter.paused():
        time.sleep(0.5)
    spec = _spec(flops_per_token=1.0, peak_flops=1.0)
    out = meter.read(spec, {"grad_norm": 1.0, "sums": [], "counts": []}, 0)
    assert out["tokens_per_s"] > 72 / 0.25  # the half second paused is not in it
    assert out["mfu"] == pytest.approx(out["tokens_per_s"] * 136 / 72, rel=0.05)  # MFU: processed tokens


def test_validation_has_a_row_when_seq_len_is_above_val_tokens_and_warns_for_a_short_language():
    said: list[str] = []
    heldout = {"en": np.tile(np.arange(20, dtype=np.uint16), 10), "de": np.arange(10, dtype=np.uint16)}
    validate = monitor.validation(monitor.text_rows(heldout, window=17, tokens=16, warn=said.append), batch_size=2)
    with torch.no_grad():  # as the loop calls it
        out = validate(_model())
    assert set(out) == {"en"} and out["en"] > 0
    assert len(said) == 1 and "de has 10 held-out tokens" in said[0]
    with torch.no_grad():
        validate(_model())
    assert len(said) == 1  # once, not at every validation


def test_validation_takes_whole_rows_up_to_val_tokens_rounded_up():
    heldout = {"en": np.arange(200, dtype=np.uint16)}
    assert len(monitor.text_rows(heldout, window=17, tokens=20)["en"]) == 2  # 34 tokens for 20, not 17
    assert len(monitor.text_rows(heldout, window=17, tokens=10**6)["en"]) == 11  # what the split holds


def _console_ctx() -> tuple[Any, io.StringIO]:
    out = io.StringIO()
    ctx = SimpleNamespace(dist=SimpleNamespace(is_main=True), console=Console(file=out, width=400))
    ctx.warn = lambda msg: Context.warn(ctx, msg)  # type: ignore[arg-type]
    return ctx, out


def test_repetition_is_warned_only_beyond_four_epochs_with_the_count_unrounded():
    from occiforge.train.trainer import warn_repeats

    ctx, out = _console_ctx()
    usage = lambda tokens: {"en": {"tokens": tokens, "tokens_per_epoch": 10_000, "epochs": round(tokens / 10_000, 3)}}  # noqa: E731
    warn_repeats(ctx, SimpleNamespace(name="base"), usage(40_000))  # type: ignore[arg-type]
    warn_repeats(ctx, SimpleNamespace(name="base"), usage(40_004))  # type: ignore[arg-type]  # 4.0004: rounds to 4.0
    assert out.getvalue().count("warning") == 1 and "base repeats en 4.0004 times (40,004 tokens from 10,000)" in out.getvalue()
    big = {"en": {"tokens": 4_000_001_024, "tokens_per_epoch": 10**9, "epochs": 4.0}}  # 4.000001: .5g says 4
    warn_repeats(ctx, SimpleNamespace(name="base"), big)  # type: ignore[arg-type]
    assert "base repeats en 4.000001024 times" in out.getvalue()


def test_a_shortened_warm_up_is_said():
    from occiforge.train.trainer import warn_warmup

    ctx, out = _console_ctx()
    warn_warmup(ctx, SimpleNamespace(name="chat"), 22, OptimConfig(warmup_steps=20))  # type: ignore[arg-type]
    assert out.getvalue() == ""
    warn_warmup(ctx, SimpleNamespace(name="chat"), 12, OptimConfig(warmup_steps=20))  # type: ignore[arg-type]
    assert "chat: a warm-up of 20 steps leaves its 12 steps no room to decay: it warms up over 5" in out.getvalue()


def _fps(tmp_path: Path, mixture: dict[str, float], world: int = 1, model: dict | None = None, **train_over: object) -> str:
    tree = tiny_tree(tmp_path / "run")
    tree["train"].update(train_over)
    tree["models"] = {"base": {"mixture": mixture, **(model or {})}}
    ctx = Context(recipe=validate_tree(tree, "r.yaml"), stages={}, _fps={"tokens": "t"}, dist=DistInfo(0, world, 0))
    return stage.model_fingerprints(ctx)["base"]


def test_the_warm_up_is_hashed_only_where_the_new_rule_moved_it_and_never_by_world_size(tmp_path: Path):
    en = {"en": 1.0}
    fp = _fps(tmp_path, en)  # tiny_tree: 12 steps, warm-up 2: as before
    assert fp == _fps(tmp_path, en, world=4)
    # a constant schedule's warm-up as long as the run trains as it did: same fingerprint as the old rule gave
    assert not OptimConfig(warmup_steps=20, schedule="constant").warmup_moved(12)
    assert OptimConfig(warmup_steps=20).warmup_moved(12) and not OptimConfig(warmup_steps=20).warmup_moved(1)
    from occiforge.train.trainer import run_fingerprint

    cfg = validate_tree(tiny_tree(tmp_path / "run", train={"optim": {"warmup_steps": 20}}), "r.yaml").train
    assert run_fingerprint("f", cfg, 22) == "f" and run_fingerprint("f", cfg, 8) not in {"f", run_fingerprint("f", cfg, 2)}
    budget = {"tokens": 4 * 32 * 8, "steps": None}  # 8 steps on one rank, 2 on four: a token budget
    assert _fps(tmp_path, en, model=budget, optim={"warmup_steps": 20}) == _fps(tmp_path, en, world=4, model=budget,
                                                                             optim={"warmup_steps": 20})


def test_the_model_fingerprint_follows_mixture_order_not_monitoring(tmp_path: Path):
    fp = _fps(tmp_path, {"en": 1.0, "de": 1.0})
    assert fp != _fps(tmp_path, {"de": 1.0, "en": 1.0})  # another data order
    assert fp == _fps(tmp_path, {"en": 1.0, "de": 1.0}, val_every=5, val_tokens=64, tensorboard=False)
    assert fp != _fps(tmp_path, {"en": 1.0, "de": 1.0}, seq_len=16)  # what changes the weights still counts
    assert fp != _fps(tmp_path, {"en": 1.0, "de": 1.0}, attention_within_documents=True)  # hashed once set


@pytest.mark.slow
def test_a_signal_while_the_model_is_built_stops_the_stage_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from occiforge.cli import main
    from occiforge.train import trainer

    tree = tiny_tree(tmp_path / "run")
    tree["models"] = {"base": {"mixture": {"en": 1.0}}}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tree, sort_keys=False))
    assert main(["run", str(recipe), "-q", "--to", "tokens"]) == 0
    build = trainer._build

    def signalled(*args: object, **kwargs: object):
        os.kill(os.getpid(), signal.SIGTERM)  # what a scheduler sends while a large model loads
        return build(*args, **kwargs)

    monkeypatch.setattr(trainer, "_build", signalled)
    assert main(["train", "-q", "-c", str(recipe)]) == 0
    models = tmp_path / "run" / "models"
    assert not (models / "base").exists() and not (models / "manifest.json").exists()
    assert not (models / ".base.ckpt" / "latest").exists()  # stopped before training, not after a step
    monkeypatch.setattr(trainer, "_build", build)

    save = trainer._save_final

    def signalled_save(*args: object, **kwargs: object):
        os.kill(os.getpid(), signal.SIGTERM)  # while the final model folder is written
        return save(*args, **kwargs)

    monkeypatch.setattr(trainer, "_save_final", signalled_save)
    assert main(["train", "-q", "-c", str(recipe)]) == 0
    assert (models / "base" / "manifest.json").is_file()  # the model is whole
    assert not (models / "manifest.json").exists()  # the stage stopped after it, unfinished
    monkeypatch.setattr(trainer, "_save_final", save)
    assert main(["train", "-q", "-c", str(recipe)]) == 0 and (models / "manifest.json").is_file()


def test_weights_gone_bad_in_the_last_update_are_not_handed_on(tmp_path: Path):
    """The last step's loss and gradient were read finite before its update; the update broke the weights."""
    model = _model()
    with pytest.raises(UserError, match=r"the weights are not finite after step 5"):
        train(model, _batches, _spec(6, log_every=1), tmp_path, on_step=_poison_after(model, 5))


@pytest.mark.slow
def test_a_kill_while_a_finished_models_checkpoints_are_removed_loses_no_training(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch, capsys):
    """The checkpoints used to go before the model's manifest: a kill in between retrained the model from its
    previous checkpoint (or from step 0), and one mid-removal set a half-removed `latest` aside as damaged."""
    from occiforge.cli import main
    from occiforge.train import trainer

    tree = tiny_tree(tmp_path / "run")
    tree["models"] = {"base": {"mixture": {"en": 1.0}}}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tree, sort_keys=False))
    discard = trainer.discard_work

    def killed(ctx: object, name: str) -> None:  # the process dies once the removal has begun
        (tmp_path / "run" / "models" / f".{name}.ckpt" / "latest" / "model.safetensors").unlink(missing_ok=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "discard_work", killed)
    assert main(["run", str(recipe), "-q", "--to", "train"]) == 130  # as the CLI answers an interrupt
    models = tmp_path / "run" / "models"
    assert (models / "base" / "manifest.json").is_file() and (models / ".base.ckpt").is_dir()
    monkeypatch.setattr(trainer, "discard_work", discard)
    monkeypatch.setattr(trainer, "train_one", lambda *a, **k: pytest.fail("a finished model was trained again"))
    aside = models / ".base.ckpt.latest.damaged-20261201-000000"  # what an earlier run set aside is said, even with -q
    aside.mkdir()
    capsys.readouterr()
    assert main(["run", str(recipe), "-q", "--to", "train"]) == 0
    said = capsys.readouterr()
    assert f"{aside.name} (delete them to free the space)" in said.out + said.err
    aside.rmdir()
    assert sorted(p.name for p in models.iterdir()) == ["base", "manifest.json"]  # nothing set aside, nothing left
    # the checkpoint of another configuration of the model (edited, trained for days, edit reverted) is not its to delete
    other = models / ".base.ckpt" / "latest"
    other.mkdir(parents=True)
    (other / "trainer_state.json").write_text(json.dumps({"fingerprint": "another", "step": 5000}))
    assert main(["run", str(recipe), "-q", "--to", "train"]) == 0
    assert (other / "trainer_state.json").is_file()
