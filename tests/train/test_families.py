"""Real model families as `init:`: tiny random Llama, Mistral, Qwen2, Qwen3 and Gemma 3 (text) folders,
built here with a tokenizer trained by occiforge's own helpers (without a BOS for Qwen, as Qwen's own), go through `occiforge run`: a bilingual
continued pre-training and an instruction tuning (`kind: sft`) on top of it, a few steps each; the
saved folders load with AutoModelForCausalLM. One non-Llama family also trains under torchrun with
FSDP2 on two CPU processes (gloo)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from occiforge.cli import main
from occiforge.recipe import TokenizerConfig
from occiforge.tokenizer.train import sample_texts, save_hf, train_tokenizer
from tests.conftest import REPO, tiny_tree, torchrun
from tests.tokenizer.conftest import demo_texts

WIDTH = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
         "intermediate_size": 64, "max_position_embeddings": 128, "head_dim": 16}
FAMILIES = {  # config class -> architecture the saved folder must name
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": 16}),  # shorter than a row: the window acts
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {}),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", {}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {"sliding_window": 16, "query_pre_attn_scalar": 16}),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", {"sliding_window": 16, "query_pre_attn_scalar": 16}),
}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tok")
    cfg = TokenizerConfig(vocab_size=600)
    save_hf(train_tokenizer(sample_texts({lang: demo_texts(lang) for lang in ("en", "de")}, cfg), cfg), folder)
    return folder


def make_family(family: str, folder: Path, tokenizer_dir: Path) -> Path:
    """A random tiny causal LM of `family` saved as a HF folder with the tokenizer beside it."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config_cls, _, extra = FAMILIES[family]
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    if family.startswith("qwen"):
        tok.bos_token = None  # as Qwen ships its tokenizers: documents start without one
    # spare embedding rows, as released models have: transformers 5 loads a folder's tokenizer by the
    # model type, and Qwen2's tokenizer class adds <|endoftext|> to a plain tokenizer (one more id)
    config = getattr(transformers, config_cls)(vocab_size=len(tok) + 8, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                                pad_token_id=tok.pad_token_id, **WIDTH, **extra)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def _recipe(tmp_path: Path, init: Path, sft: bool = True, **train: object) -> Path:
    tree = tiny_tree(tmp_path / "run", eval={"bpb": False}, report={"enabled": False})
    tree["tokenizer"] = {"pretrained": str(init)}
    tree["train"].update(seq_len=96, batch_size=2, steps=3, log_every=1, save_every=100, **train)
    tree["models"] = {"cpt": {"init": str(init), "targets": ["de"], "replay": 0.3, "steps": 3}}
    if sft:
        tree["models"]["chat"] = {"kind": "sft", "init": "cpt-de", "steps": 2,
                                  "data": [{"path": "builtin:demo", "languages": ["en", "de"]}]}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


@pytest.mark.parametrize("family", list(FAMILIES))
def test_decoder_layers_are_found_in_every_family(family: str, tmp_path: Path, tokenizer_dir: Path):
    from occiforge.lm import load_causal_lm
    from occiforge.train.parallel import decoder_layers

    model = load_causal_lm(make_family(family, tmp_path / family, tokenizer_dir))
    assert type(model).__name__ == FAMILIES[family][1]
    layers = decoder_layers(model)
    assert len(layers) == WIDTH["num_hidden_layers"] and layers[0] is model.model.layers[0]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_cpt_then_sft_from_a_family_folder(family: str, tmp_path: Path, tokenizer_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    init = make_family(family, tmp_path / family, tokenizer_dir)
    assert main(["run", str(_recipe(tmp_path, init)), "-q", "--to", "train"]) == 0
    models = tmp_path / "run" / "models"
    for name in ("cpt-de", "chat"):
        model = AutoModelForCausalLM.from_pretrained(models / name)
        tok = AutoTokenizer.from_pretrained(models / name)
        assert type(model).__name__ == FAMILIES[family][1], name
        assert len(tok) <= model.get_input_embeddings().num_embeddings
        assert ("<|im_end|>" in tok.get_vocab()) == (name == "chat")  # sft adds the ChatML tokens
        log = json.loads((models / name / "train_log.json").read_text())
        assert len(log) == (3 if name == "cpt-de" else 2) and all(r["loss"] > 0 for r in log)
    registry = {r["name"]: r for r in json.loads((models / "manifest.json").read_text())["models"]}
    assert registry["cpt-de"]["kind"] == "cpt" and registry["chat"]["kind"] == "sft"
    if family == "qwen2":  # a tokenizer without a BOS chats too
        proc = subprocess.run([sys.executable, "-m", "occiforge.cli", "chat", "--model", str(models / "chat"),
                               "--max-new-tokens", "4"], input="Hallo\n", cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fsdp2_two_ranks_on_qwen3_cpt_then_sft(tmp_path: Path, tokenizer_dir: Path):
    from transformers import AutoModelForCausalLM

    init = make_family("qwen3", tmp_path / "qwen3", tokenizer_dir)
    recipe = _recipe(tmp_path, init)
    assert main(["run", str(recipe), "--to", "conversations", "-q"]) == 0
    cmd = torchrun(tmp_path, "-m", "occiforge.cli", "train", "-c", str(recipe), "-q")
    proc = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    folder = tmp_path / "run" / "models" / "cpt-de"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["tokens_seen"] == 3 * 2 * 96 * 2
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert type(model).__name__ == "Qwen3ForCausalLM"
    assert not model.config.tie_word_embeddings and model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    chat = json.loads((tmp_path / "run" / "models" / "chat" / "manifest.json").read_text())
    assert chat["world_size"] == 2 and chat["init"] == "cpt-de" and chat["steps"] == 2
