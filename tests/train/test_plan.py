"""`occiforge plan`: tokens, parameters, FLOPs, GPU hours and memory per GPU, by hand on a tiny
recipe; refusal of a plan that does not fit; hub ids offline; the Occiglot 7B recipe; a light --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from occiforge.cli import main
from occiforge.recipe import load_recipe
from occiforge.train.plan import GPUS, estimate
from tests.conftest import REPO, tiny_tree


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny_tree(tmp_path / "run"), sort_keys=False))
    return path


def test_numbers_of_a_tiny_recipe_by_hand(recipe: Path):
    # tiny_tree: Llama, hidden 32, 1 layer, 2 heads (no GQA), MLP 64, tied embeddings, vocabulary 600;
    # seq_len 32, micro-batch 4, grad_accum 1, fp32; base 12 steps, cpt-de 6 steps from base
    rows = {e.name: e for e in estimate(load_recipe(recipe), gpus=2, gpu_type="H100", mfu=0.4)}
    base = rows["base"]
    layer = 4 * 32 * 32 + 3 * 32 * 64 + 2 * 32  # q, k, v, o; gate, up, down; two RMSNorms
    assert base.shape.params == 600 * 32 + layer + 32 == 29_536  # + final norm; the head is the embedding
    assert (base.shape.layer, base.shape.embedding) == (layer, 19_200)
    assert base.tokens == 12 * 4 * 1 * 32 * 2 == 3072
    per_token = 6 * (29_536 - 19_200) + 12 * 1 * 32 * 32  # 6·N without the input embedding + attention
    assert base.flops == per_token * 3072 == 228_261_888
    assert base.gpu_hours == pytest.approx(228_261_888 / (989e12 * 0.4) / 3600)
    m = base.memory
    assert m["states"] == 16 * 29_536 / 2  # fp32 weights, grads, two AdamW moments, over 2 GPUs
    assert m["fsdp_working"] == 2 * layer * 4 + 4 * layer + (29_536 - layer) * 4  # two gathered layers, one layer's grads, root
    per_layer_token = 4 * (2 * 32 + 2 * 32 + 2 * 32 + 4 * 64) + 4 * 2 * 32  # = 2048 bytes
    assert m["activations"] == 1 * 4 * 32 * per_layer_token == 262_144
    assert m["activations_ckpt"] == 1 * 4 * 32 * 4 * 32 + 262_144  # layer inputs + one layer recomputed
    # the chunked loss: all 128 positions in one chunk of fp32 logits (+ slack for a bf16 copy), the flattened
    # hidden states and their gradient, the head's fp32 gradient and its compute-dtype copy
    assert m["loss"] == 128 * 600 * 8 + 2 * 4 * 128 * 32 + (4 + 2 * 4) * 600 * 32
    assert base.total == m["states"] + m["fsdp_working"] + m["activations"] + m["loss"]
    own = {e.name: e for e in estimate(load_recipe(recipe, ["train.chunked_loss=false"]), gpus=2, gpu_type="H100", mfu=0.4)}
    assert own["base"].memory["loss"] == 4 * 32 * 600 * (4 + 16)  # the logits + four fp32 copies at the loss backward
    cpt = rows["cpt-de"]
    assert cpt.shape == base.shape and cpt.tokens == 6 * 4 * 32 * 2


def test_plan_prints_every_model(recipe: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["plan", str(recipe), "--gpus", "2", "--gpu-type", "h200", "--mfu", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "2 x H200" in out and "MFU 0.50" in out
    assert "base (models.base): 12 steps, 3.07k tokens, 29.54k parameters, 2.283e+08 FLOPs" in out
    assert "cpt-de (models.cpt): 6 steps" in out and out.rstrip().splitlines()[-1].startswith("total: 4.61k tokens")


def test_a_plan_that_does_not_fit_is_refused_naming_the_model(recipe: Path, capsys: pytest.CaptureFixture[str]):
    # 2M rows of 32 tokens x 2 KiB of activations each is ~122 GiB
    assert main(["plan", str(recipe), "--gpu-type", "A100-40", "--set", "train.batch_size=2000000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("occiforge: error: models.base (base): needs about ")
    assert "36.00 GiB usable on a A100-40" in err[0]
    assert set(GPUS) >= {"H100", "H200", "A100-80", "A100-40"}


def test_a_hub_id_offline_is_one_line(recipe: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code = main(["plan", str(recipe), "--set", "models.base.init=nobody-here/no-such-model-1b"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "models.base.init: 'nobody-here/no-such-model-1b'" in err[0]


@pytest.mark.slow
def test_occiglot_7b_recipe_plans_on_64_h100(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """No weights: a folder with Mistral-7B's config (MistralConfig's defaults are Mistral-7B-v0.1's)."""
    from transformers import MistralConfig

    MistralConfig().save_pretrained(tmp_path / "mistral-7b")
    args = ["plan", str(REPO / "recipes" / "occiglot-7b.yaml"), "--gpus", "64", "--gpu-type", "H100",
            "--set", f"models.occiglot.init={tmp_path / 'mistral-7b'}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for lang in ("de", "fr", "it", "es"):
        assert f"occiglot-{lang} (models.occiglot): 27,000 steps, 113.25B tokens, 7.24B parameters" in out
    rows = estimate(load_recipe(REPO / "recipes" / "occiglot-7b.yaml", [args[-1]]),
                    gpus=64, gpu_type="H100", mfu=0.4)
    assert rows[0].shape.params == 7_241_732_096  # Mistral-7B-v0.1
    assert rows[0].total < 0.9 * GPUS["H100"][0] * 2**20
    # without activation checkpointing 8,192-token rows do not fit an H100: refused
    assert main([*args, "--set", "train.activation_checkpointing=false"]) == 2
    assert "models.occiglot (occiglot-de): needs about" in capsys.readouterr().err


def test_help_imports_no_torch():
    code = ("import sys\nfrom occiforge.cli import main\n"
            "for argv in (['--help'], ['plan', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]\nassert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "plan" in proc.stdout and "--gpu-type" in proc.stdout
