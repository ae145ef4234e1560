"""torchrun + FSDP2 on CPU (gloo), two real processes: train, save a HF folder, and resume a
two-rank checkpoint on two ranks (one process is refused: its rows would not be the same)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers import AutoModelForCausalLM

from occiforge.cli import main
from tests.conftest import REPO, tiny_tree, torchrun, wait_for_lines


def test_only_rank_zero_builds_the_model_and_every_rank_gets_its_shards(tmp_path: Path):
    out = tmp_path / "probe.jsonl"
    cmd = torchrun(tmp_path, str(REPO / "tests" / "train" / "shard_probe.py"), str(out))
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    for rank in (0, 1):
        *families, refused, crashed, remote = [json.loads(line) for line in Path(f"{out}.{rank}").read_text().splitlines()]
        assert [r["family"] for r in families] == ["llama", "gemma2", "qwen3"]
        for row in families:
            assert row["built"] == (rank == 0), (rank, row)
            for r in (row, row["resumed"]):  # as loaded from rank 0, and as a resume rebuilds it from its checkpoint
                assert r["vocab"] == 100 and r["eos"] == [5, 6], (rank, row)
                assert r["weights_equal"] and r["buffers_equal"] and r["logits_max_diff"] < 1e-5, (rank, row)
                assert r["tied"] == (row["family"] != "qwen3"), (rank, row)  # tied weights stay one parameter
        assert refused == {"raised": "UserError", "message": "init 'broken': cannot load"}
        # any other failure of rank 0's build: the original there, one line on the others; nobody waits
        assert crashed == ({"raised": "RuntimeError", "message": "disk on fire"} if rank == 0 else
                           {"raised": "UserError", "message": "rank 0 could not build the model: RuntimeError: disk on fire"})
        assert remote["raised"] == "UserError" and remote["message"].startswith("RemoteLM runs its own code"), remote


def _torchrun(recipe: Path) -> subprocess.Popen:
    cmd = torchrun(recipe.parent, "-m", "occiforge.cli", "train", "-c", str(recipe))
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, )


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    tree = tiny_tree(tmp_path / "run")
    tree["train"].update(steps=24, save_every=8)
    tree["models"] = {"base": {"mixture": {"en": 1.0}}}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tree, sort_keys=False))
    assert main(["run", str(recipe), "--to", "tokens", "-q"]) == 0
    return recipe


def test_two_ranks_train_and_save_a_hf_model(prepared: Path):
    proc = _torchrun(prepared)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    folder = prepared.parent / "run" / "models" / "base"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["tokens_seen"] == 24 * 4 * 32 * 2
    log = json.loads((folder / "train_log.json").read_text())
    assert log[-1]["loss"] < log[0]["loss"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_two_rank_checkpoint_resumes_on_two_ranks_not_one(prepared: Path):
    tree = yaml.safe_load(prepared.read_text())
    # no periodic checkpoint: the SIGTERM writes the one the resume starts from (a few steps in)
    tree["train"].update(steps=200, save_every=10_000, log_every=1)
    prepared.write_text(yaml.safe_dump(tree, sort_keys=False))
    ckpt = prepared.parent / "run" / "models" / ".base.ckpt"
    proc = _torchrun(prepared)
    wait_for_lines(ckpt / "train_log.jsonl", 3, proc)  # training started
    proc.terminate()  # `kill PID` of the launcher: torchrun passes SIGTERM to its workers, which checkpoint and exit
    out, _ = proc.communicate(timeout=120)
    assert out.count("stopped by SIGTERM") == 1, out[-3000:]  # one line for the job, not one per rank
    state = ckpt / "latest" / "trainer_state.json"
    step = json.loads(state.read_text())["step"]
    assert 3 <= step < 200 and not (prepared.parent / "run" / "models" / "base" / "manifest.json").exists()
    assert len(list(state.parent.glob("*.safetensors"))) == 2  # one file per rank, never two ranks on one file

    proc = subprocess.run([sys.executable, "-m", "occiforge.cli", "train", "-q", "-c", str(prepared)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "written by 2 ranks and this run has 1" in proc.stderr, proc.stderr[-800:]
    assert len(proc.stderr.strip().splitlines()) == 1 and state.is_file()  # one line, the checkpoint kept

    out, _ = _torchrun(prepared).communicate(timeout=300)
    assert f"base: resuming from step {step}" in out, out[-3000:]
    assert (prepared.parent / "run" / "models" / "base" / "model.safetensors").is_file()


def test_work_one_rank_does_alone_joins_no_collective(tmp_path: Path):
    """The moe stage trains its router on rank 0 while the other ranks wait at the runner's barrier: its
    loop, checkpoints and resume must see a world of one (they ran barriers and all-reduces that no other
    rank joined, and scaled the loss by 2), and end as the same steps in a single process do."""
    import torch
    from safetensors.torch import load_file

    from tests.train.local_probe import steps

    out = tmp_path / "rank0.safetensors"
    proc = subprocess.run(torchrun(tmp_path, str(REPO / "tests" / "train" / "local_probe.py"), str(out)),
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    alone = steps(tmp_path / "alone").state_dict()
    for key, value in load_file(out).items():
        assert torch.equal(value, alone[key]), key
    for rank in (0, 1):  # every rank gets the verdict of the file only rank 1 read
        whole, damaged, name = json.loads(Path(f"{out}.{rank}.json").read_text())
        assert whole is None and damaged == f"{name} is missing or changed", (rank, damaged)
