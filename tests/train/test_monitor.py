"""What a run shows and how it stops: logged figures per step and language, validation loss,
train_log.jsonl + TensorBoard, a NaN loss that stops the run, SIGTERM and SIGINT checkpoints."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from occiforge.cli import main
from occiforge.errors import UserError
from occiforge.loop import Hooks, LoopSpec, train
from occiforge.recipe import OptimConfig
from tests.conftest import REPO, tiny_tree, wait_for_lines
from tests.train.test_loop import _masked_rows, _model
from tests.train.test_safety import _poison_after


def _spec(steps: int, **over: object) -> LoopSpec:
    base = {"steps": steps, "lr": 1e-2, "optim": OptimConfig(warmup_steps=1), "grad_accum": 2, "precision": "fp32",
            "save_every": 3, "log_every": 1, "fingerprint": "mon", "groups": ("en", "de")}
    return LoopSpec(**{**base, **over})  # type: ignore[arg-type]


def _grouped(step: int, micro: int) -> dict[str, torch.Tensor]:
    ids, labels = _masked_rows(step)
    rows = slice(4 * micro, 4 * micro + 4)
    return {"input_ids": ids[rows], "labels": labels[rows], "groups": torch.tensor([0, 1, 1, 0])}


def test_logged_steps_carry_loss_per_language_grad_norm_throughput_and_memory(tmp_path: Path):
    seen: list[dict] = []
    history = train(_model(), _grouped, _spec(3), tmp_path, hooks=Hooks(on_log=seen.append))
    assert seen == history and [h["step"] for h in history] == [0, 1, 2]
    for rec in history:
        assert rec["grad_norm"] > 0 and rec["peak_mem_mb"] > 0
        assert "mfu" not in rec  # no known peak on a CPU
    # the first step pays once (allocations, optimizer state): its time is no throughput figure
    assert "tokens_per_s" not in history[0] and all(rec["tokens_per_s"] > 0 for rec in history[1:])
    # per-language losses are parts of the same sum: their target-weighted mean is the step's loss
    _, labels = _masked_rows(0)
    counts = {g: int((labels[[i for i in range(8) if [0, 1, 1, 0][i % 4] == k], 1:] != -100).sum()) for k, g in enumerate(("en", "de"))}
    rec = history[0]
    mean = (rec["loss_en"] * counts["en"] + rec["loss_de"] * counts["de"]) / sum(counts.values())
    assert mean == pytest.approx(rec["loss"], abs=1e-4) and rec["loss_en"] != rec["loss_de"]


def test_conversation_validation_is_the_mean_nll_of_the_answer_tokens():
    """Two held-out conversations of unequal length (padded into one batch) and one cut to the row: the
    loss is the NLL of their assistant tokens, token-weighted, as each conversation alone gives it."""
    import numpy as np

    from occiforge.train.monitor import conversation_rows, validation
    from occiforge.train.packing import Docs

    rng = np.random.default_rng(0)
    lens = [12, 7, 40]
    ids = rng.integers(0, 50, sum(lens)).astype(np.uint16)
    targets = (rng.random(sum(lens)) < 0.5).astype(np.uint8)
    docs = Docs(ids, np.cumsum([0, *lens]), targets)
    model = _model().eval()
    nll, count = 0.0, 0
    for s, n in zip(np.cumsum([0, *lens[:-1]]), (12, 7, 17)):  # the third cut to the row's 17 tokens
        x = torch.from_numpy(ids[s : s + n].astype(np.int64))[None]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=x).logits[0, :-1].double(), -1)
        keep = torch.from_numpy(targets[s + 1 : s + n].astype(bool))
        nll -= float(logp[torch.arange(n - 1), x[0, 1:]][keep].sum())
        count += int(keep.sum())
    rows = conversation_rows({"en": docs}, window=17, tokens=10**6)
    assert [len(r[0]) for r in rows["en"]] == [12, 7, 17]
    with torch.no_grad():
        got = validation(rows, batch_size=2)(model)["en"]
    assert got == pytest.approx(nll / count, abs=1e-5)
    assert len(conversation_rows({"en": docs}, window=17, tokens=15)["en"]) == 2  # enough conversations for 15 tokens


def test_validation_runs_every_n_steps_and_at_the_end(tmp_path: Path):
    calls: list[bool] = []

    def validate(model: torch.nn.Module) -> dict[str, float]:
        calls.append(model.training)
        return {"en": 1.5}

    history = train(_model(), _grouped, _spec(5, val_every=2, log_every=10), tmp_path, hooks=Hooks(validate=validate))
    # on the steps a log_every of 2 would log (step 0: where training starts from), and at the end
    assert [h["step"] for h in history if "val_loss" in h] == [0, 2, 4] and calls == [False] * 3
    assert history[1]["val_loss"] == {"en": 1.5}


def test_a_nan_loss_stops_the_run_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path: Path):
    model = _model()
    with pytest.raises(UserError, match=r"loss is nan at step 4: training stopped; the last good checkpoint \(step 3\)"):
        train(model, _grouped, _spec(10), tmp_path, on_step=_poison_after(model, 3))
    state = json.loads((tmp_path / "latest" / "trainer_state.json").read_text())
    assert state["step"] == 3


def test_a_nan_between_logged_steps_is_named_and_never_checkpointed(tmp_path: Path):
    """Step 4 goes NaN unlogged (log_every=10); step 5's checkpoint is due: it is refused, naming step 4."""
    model = _model()
    with pytest.raises(UserError, match=r"not finite from step 4 on \(loss nan at step 5\).*last good checkpoint \(step 3\)"):
        train(model, _grouped, _spec(10, log_every=10), tmp_path, on_step=_poison_after(model, 3))
    state = json.loads((tmp_path / "latest" / "trainer_state.json").read_text())
    assert state["step"] == 3  # the checkpoint due after step 5 (at step 6) was never written from NaN weights


def _recipe(tmp_path: Path, **train_over: object) -> Path:
    tree = tiny_tree(tmp_path / "run")
    tree["train"].update(train_over)
    tree["models"] = {"base": {"mixture": {"en": 1.0, "de": 1.0}}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


@pytest.mark.slow
def test_train_log_jsonl_tensorboard_and_validation_per_language(tmp_path: Path):
    recipe = _recipe(tmp_path, steps=6, log_every=2, val_every=3, val_tokens=64)
    assert main(["run", str(recipe), "-q", "--to", "train"]) == 0
    folder = tmp_path / "run" / "models" / "base"
    lines = [json.loads(x) for x in (folder / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [0, 2, 3, 4, 5] and [r["step"] for r in lines if "val_loss" in r] == [0, 3, 5]
    assert {"loss_en", "loss_de", "grad_norm", "lr"} <= set(lines[0]) and "tokens_per_s" in lines[1]
    assert set(lines[2]["val_loss"]) == {"en", "de"}
    assert list((folder / "tb").glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tb"))
    events.Reload()
    assert {"train/loss", "train/grad_norm", "val_loss/en"} <= set(events.Tags()["scalars"])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["per_language"]) == {"en", "de"} and manifest["per_language"]["en"]["epochs"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, said", [(signal.SIGTERM, 0, "stopped by SIGTERM"), (signal.SIGINT, 130, "stopped by SIGINT")])
def test_a_signal_writes_a_checkpoint_exits_with_its_code_and_the_rerun_resumes(tmp_path: Path, sig, code, said):
    recipe = _recipe(tmp_path, steps=5000, save_every=10_000, log_every=1)
    assert main(["run", str(recipe), "-q", "--to", "tokens"]) == 0
    log = tmp_path / "run" / "models" / ".base.ckpt" / "train_log.jsonl"
    step = _run_until_signal(recipe, log, sig, code, said, min_lines=3)
    assert json.loads(log.read_text().splitlines()[-1])["step"] == step - 1  # logged up to the checkpoint's step

    if sig != signal.SIGTERM:
        return  # one resume is enough: the checkpoint is the same kind whichever signal wrote it
    again = _run_until_signal(recipe, log, signal.SIGTERM, 0, "stopped by SIGTERM", min_lines=step + 2, quiet=False,
                              resumed=f"base: resuming from step {step}")
    assert again > step


def _run_until_signal(recipe: Path, log: Path, sig: int, code: int, said: str, min_lines: int, quiet: bool = True,
                      resumed: str | None = None) -> int:
    proc = subprocess.Popen([sys.executable, "-m", "occiforge.cli", "train", "-c", str(recipe), *(["-q"] if quiet else [])],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_lines(log, min_lines, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    line = err.strip().splitlines()[-1]
    assert said in line and "run the same command again to resume" in line, err[-2000:]
    step = json.loads((log.parent / "latest" / "trainer_state.json").read_text())["step"]
    assert f"checkpoint at step {step} written" in line and step >= 3
    assert resumed is None or resumed in err, err[-2000:]
    return step
