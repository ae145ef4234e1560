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
from occiforge.train.plan import GPUS, estimate, flops_per_token
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
    # 6·(weights without the input embedding + the tied head's V·h) + attention, 12·L·h_q·T
    per_token = 6 * (29_536 - 19_200 + 600 * 32) + 12 * 1 * 32 * 32
    assert base.flops == per_token * 3072 == 582_156_288
    # fp32: the H100's fp32 peak (67 TFLOP/s, no TF32), not its bf16 tensor-core peak (989)
    assert base.gpu_hours == pytest.approx(582_156_288 / (67e12 * 0.4) / 3600)
    bf16 = estimate(load_recipe(recipe, ["train.precision=bf16"]), gpus=2, gpu_type="H100", mfu=0.4)[0]
    assert bf16.gpu_hours == pytest.approx(582_156_288 / (989e12 * 0.4) / 3600)
    # loading under FSDP2: the fp32 shards, the largest tensor (the embedding) whole in flight and its half
    assert base.shape.tensor == 19_200 and base.load == 4 * (29_536 / 2 + 19_200 * 1.5) and base.peak == base.total
    m = base.memory
    assert m["states"] == 16 * 29_536 / 2  # fp32 weights, grads, two AdamW moments, over 2 GPUs
    assert m["fsdp_working"] == 2 * layer * 4 + 4 * layer + (29_536 - layer) * 4  # two gathered layers, one layer's grads, root
    per_layer_token = 4 * (2 * 32 + 2 * 32 + 2 * 32 + 4 * 64) + 4 * 2 * 32  # = 2048 bytes
    assert m["activations"] == 1 * 4 * 32 * per_layer_token == 262_144
    assert m["activations_ckpt"] == 1 * 4 * 32 * 4 * 32 + 262_144  # layer inputs + one layer recomputed
    # the chunked loss: all 128 positions in one chunk of fp32 logits (+ slack for a bf16 copy), the flattened
    # hidden states and their gradient, the head's fp32 gradient and its compute-dtype copy
    assert m["loss"] == 128 * 600 * 8 + 2 * 4 * 128 * 32 + (4 + 2 * 4) * 600 * 32
    assert m["scores"] == m["scores_ckpt"] == 0  # SDPA: no T² scores
    assert base.total == m["states"] + m["fsdp_working"] + m["activations"] + m["loss"]
    own = {e.name: e for e in estimate(load_recipe(recipe, ["train.chunked_loss=false"]), gpus=2, gpu_type="H100", mfu=0.4)}
    assert own["base"].memory["loss"] == 4 * 32 * 600 * (4 + 16)  # the logits + four fp32 copies at the loss backward
    cpt = rows["cpt-de"]
    assert cpt.shape == base.shape and cpt.tokens == 6 * 4 * 32 * 2


def test_the_residual_stream_is_bf16_only_under_fsdp2(recipe: Path):
    """One GPU keeps fp32 params (fp32 residual stream under autocast); FSDP2 gathers them in bf16."""
    r = load_recipe(recipe, ["train.precision=bf16"])
    one, two = (estimate(r, gpus=g, gpu_type="H100", mfu=0.4)[0].memory for g in (1, 2))
    tokens_h = 4 * 32 * 32  # b·T·h
    assert one["activations_ckpt"] - two["activations_ckpt"] == 1 * tokens_h * (4 - 2)  # checkpointed layer inputs
    assert one["loss"] - two["loss"] == 2 * tokens_h * (4 - 2)  # the last hidden states and their gradient


def test_plan_prints_every_model(recipe: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["plan", str(recipe), "--gpus", "2", "--gpu-type", "h200", "--mfu", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "2 x H200" in out and "MFU 0.50 (measured by occiforge's GPU benchmark on one H200, ~1B Llama" in out
    assert "base (models.base): 12 steps, 3.07k tokens, 29.54k parameters, 5.822e+08 FLOPs" in out
    assert "cpt-de (models.cpt): 6 steps" in out and out.rstrip().splitlines()[-1].startswith("total: 4.61k tokens")


def test_a_plan_that_does_not_fit_is_refused_naming_the_model(recipe: Path, capsys: pytest.CaptureFixture[str]):
    # 2M rows of 32 tokens x 2 KiB of activations each is ~122 GiB
    assert main(["plan", str(recipe), "--gpu-type", "A100-40", "--set", "train.batch_size=2000000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("occiforge: error: models.base (base): needs about ")
    assert "36.00 GiB usable on a A100-40" in err[0]
    assert err[0].endswith("add GPUs, lower train.batch_size (raise grad_accum) or set train.activation_checkpointing: true")
    assert set(GPUS) >= {"H100", "H200", "A100-80", "A100-40"}


def test_the_refusal_suggests_only_what_is_not_set(recipe: Path, capsys: pytest.CaptureFixture[str]):
    # checkpointing on and a micro-batch of one: only more GPUs are left to suggest
    assert main(["plan", str(recipe), "--gpu-type", "A100-40", "--set", "train.activation_checkpointing=true",
                 "--set", "train.batch_size=1", "--set", "train.seq_len=20000000",
                 "--set", "train.architecture.max_position_embeddings=20000001"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("with 1 GPU(s); add GPUs"), err


def test_a_model_whose_states_alone_do_not_fit_is_told_only_to_add_gpus(recipe: Path, capsys: pytest.CaptureFixture[str]):
    # ~3.2B parameters x 16 bytes on one A100-40: no batch size or checkpointing can help
    assert main(["plan", str(recipe), "--gpu-type", "A100-40", "--set", "train.architecture.hidden_size=4096",
                 "--set", "train.architecture.intermediate_size=11008", "--set", "train.architecture.num_layers=16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "; add GPUs: the weights, gradients and AdamW states alone need " in err[0], err


def _folder(tmp_path: Path, config) -> str:
    path = tmp_path / type(config).__name__
    config.save_pretrained(path)
    return str(path)


def test_eager_attention_counts_its_score_matrices(recipe: Path, tmp_path: Path):
    """transformers builds Gemma-2 with eager attention (b·H·T² scores kept per layer), Gemma with SDPA (none)."""
    from transformers import Gemma2Config, GemmaConfig

    dims = {"vocab_size": 256, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 8, "num_key_value_heads": 8, "head_dim": 16, "max_position_embeddings": 64}
    for config, per_elem in ((Gemma2Config(**dims), 4 + 4), (GemmaConfig(**dims), 0)):  # fp32 softmax + soft-capped scores
        r = load_recipe(recipe, [f"models.base.init={_folder(tmp_path, config)}", "train.activation_checkpointing=true"])
        e = estimate(r, gpus=1, gpu_type="H100", mfu=0.4)[0]
        elems = 4 * 8 * 32 * 32  # b·H·T² of one layer (micro-batch 4, seq_len 32, fp32)
        backward = 8 * elems if per_elem else 0  # two fp32 T² gradients of the layer in backward
        assert e.shape.eager == bool(per_elem)
        assert e.memory["scores"] == 2 * per_elem * elems + backward
        assert e.memory["scores_ckpt"] == per_elem * elems + backward  # one layer at a time under checkpointing
        m = e.memory
        assert e.total == m["states"] + m["fsdp_working"] + m["loss"] + m["activations_ckpt"] + m["scores_ckpt"]


def test_loading_the_fp32_model_on_one_gpu_is_refused(recipe: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """10.3B parameters: 38 GiB of fp32 weights on one A100-40 (36.9 usable) is refused at loading,
    with more GPUs as the way out; on 64, the shards arrive one tensor at a time and loading is small."""
    from transformers import LlamaConfig

    big = LlamaConfig(vocab_size=600, hidden_size=8192, intermediate_size=28672, num_hidden_layers=12,
                      num_attention_heads=64, num_key_value_heads=8)
    init = f"models.base.init={_folder(tmp_path, big)}"
    e = estimate(load_recipe(recipe, [init]), gpus=1, gpu_type="A100-40", mfu=0.4)[0]
    assert e.load == 4 * e.shape.params > 0.9 * GPUS["A100-40"][0] * 2**20
    assert main(["plan", str(recipe), "--gpus", "1", "--gpu-type", "A100-40", "--set", init]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    gib = f"{e.load / 2**30:.2f} GiB"
    assert gib.startswith("38.") and len(err) == 1, err
    assert err[0].startswith(f"occiforge: error: models.base (base): loading needs about {gib} per GPU (the fp32 model whole)")
    assert "train on more GPUs" in err[0]
    sharded = estimate(load_recipe(recipe, [init]), gpus=64, gpu_type="A100-40", mfu=0.4)[0]
    mlp = 8192 * 28672  # the largest tensor: one MLP matrix
    assert sharded.shape.tensor == mlp and sharded.load == 4 * (sharded.shape.params / 64 + mlp * (1 + 1 / 64)) < e.load / 8


def test_a_multimodal_gemma3_config_is_one_line(recipe: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from transformers import Gemma3Config

    folder = _folder(tmp_path, Gemma3Config())  # what google/gemma-3-4b/12b/27b ship
    assert main(["plan", str(recipe), "--set", f"models.base.init={folder}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == (f"occiforge: error: models.base.init: {folder} is a multimodal model (Gemma3Config, "
                                        "gemma3); only text-only causal LMs are supported (gemma3_text)")


def test_flops_count_the_head_tied_or_not_and_the_sliding_window():
    from transformers import Gemma2Config, LlamaConfig, MistralConfig

    from occiforge.train.plan import shape_of

    dims = {"vocab_size": 600, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    tied, untied = LlamaConfig(**dims, tie_word_embeddings=True), LlamaConfig(**dims, tie_word_embeddings=False)
    s = shape_of(tied)
    attention = 12 * 2 * 32 * 128  # 12·L·h_q·T, T = 128
    # the head's matmul runs whether or not its weight is the embedding: 6·V·h per token more than 6·(N - embedding)
    assert flops_per_token(tied, 128) - (6 * (s.params - s.embedding) + attention) == 6 * 600 * 32
    assert flops_per_token(tied, 128) == flops_per_token(untied, 128)
    full = flops_per_token(MistralConfig(**dims, sliding_window=None), 128)
    assert flops_per_token(MistralConfig(**dims, sliding_window=128), 128) == full
    assert full - flops_per_token(MistralConfig(**dims, sliding_window=32), 128) == 12 * 2 * 32 * (128 - 32)
    # Gemma-2 alternates sliding and full layers: one of its two layers spans the window
    gemma2 = Gemma2Config(**dims, head_dim=16, sliding_window=32)
    assert gemma2.layer_types == ["sliding_attention", "full_attention"]
    g = shape_of(gemma2)
    assert flops_per_token(gemma2, 128) == 6 * (g.params - g.embedding + 600 * 32) + 12 * 32 * (32 + 128)


def test_flops_of_a_mixture_count_only_the_experts_a_token_is_routed_to():
    from transformers import LlamaConfig, MixtralConfig, Qwen3MoeConfig

    from occiforge.train.plan import shape_of

    dims = {"vocab_size": 600, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 2, "tie_word_embeddings": False}
    dense = flops_per_token(LlamaConfig(**dims), 128)
    one_of_four = flops_per_token(MixtralConfig(**dims, num_local_experts=4, num_experts_per_tok=1), 128)
    # one routed expert is the dense MLP; beyond it only the routers (h x E per layer) add FLOPs
    assert one_of_four - dense == 6 * 2 * 32 * 4
    two_of_four = flops_per_token(MixtralConfig(**dims, num_local_experts=4, num_experts_per_tok=2), 128)
    assert two_of_four - one_of_four == 6 * 2 * 3 * 32 * 64  # a second expert: 3 matrices per layer
    qwen = Qwen3MoeConfig(**dims, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=64, head_dim=16)
    assert shape_of(qwen).inactive == 2 * 6 * 3 * 32 * 64  # 6 of 8 experts idle in each of 2 layers
    mixtral = shape_of(MixtralConfig())  # its defaults are Mixtral-8x7B's: 46.7B parameters, 12.9B active per token
    assert (mixtral.params, mixtral.params - mixtral.inactive) == (46_702_792_704, 12_879_925_248)
    # a mixture opening with a dense layer: memory is planned for the largest (sparse) layer
    opens_dense = Qwen3MoeConfig(**dims, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=64, head_dim=16,
                                 mlp_only_layers=[0])
    assert shape_of(opens_dense).layer == shape_of(qwen).layer > 8 * 3 * 32 * 64


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
    # loading: 1/64 of the fp32 model, and the largest tensor (the embedding, or the untied head: 131M) whole in flight
    embedding = 32_000 * 4096
    assert rows[0].shape.tensor == embedding > 4096 * 14336  # larger than an MLP matrix
    assert rows[0].load == 4 * (7_241_732_096 / 64 + embedding * (1 + 1 / 64)) and rows[0].peak == rows[0].total > rows[0].load
    assert rows[0].peak < 0.9 * GPUS["H100"][0] * 2**20
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


def test_the_monitor_finds_a_gpu_in_the_plans_table_by_its_whole_name(monkeypatch: pytest.MonkeyPatch):
    """One table of GPU peaks: MFU in the train log divides by what the plan's GPU hours assume."""
    import torch

    from occiforge.train import monitor, plan

    names = {"NVIDIA H100 80GB HBM3": "H100", "NVIDIA A100-SXM4-40GB": "A100", "NVIDIA L40S": "L40S",
             "NVIDIA A10": "A10", "NVIDIA A10G": None, "NVIDIA GH200 480GB": None}
    assert {n: plan.gpu_type_of(n) for n in names} == names
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-80GB")
    assert monitor.peak_flops("cuda:0", "bf16") == plan.peak_flops("A100", "bf16") == 312e12
    assert monitor.peak_flops("cuda:0", "fp32") == 19.5e12  # CUDA cores: TF32 stays off
    assert monitor.peak_flops("cpu", "bf16") is None


def test_a_sequence_above_the_inits_positions_is_refused_as_training_refuses_it(recipe: Path, tmp_path: Path,
                                                                                 capsys: pytest.CaptureFixture[str]):
    from transformers import LlamaConfig

    short = _folder(tmp_path, LlamaConfig(vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                          num_attention_heads=2, max_position_embeddings=16))
    assert main(["plan", str(recipe), "--set", f"models.base.init={short}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("occiforge: error: models.base (base): train.seq_len") and "above the model's 16 positions" in err, err
