"""The one safe loader: no custom code, safetensors only, hub ids checked before any stage runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from occiforge import lm
from occiforge.errors import UserError


def _remote_code_model(folder: Path, marker: Path) -> Path:
    """A model folder whose config asks for its own Python code; running that code leaves `marker`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=16)).save_pretrained(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    return folder


def _load_in_fresh_process(folder: Path) -> str:
    probe = (f"from occiforge import lm\ntry:\n    print(type(lm.load_causal_lm({str(folder)!r})).__name__)\n"
             "except Exception as e:\n    print(type(e).__name__)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    return out.stdout.strip().splitlines()[-1]


def test_remote_code_never_runs_and_never_prompts(tmp_path: Path):
    marker = tmp_path / "ran.txt"
    folder = _remote_code_model(tmp_path / "m", marker)
    assert _load_in_fresh_process(folder) == "LlamaForCausalLM"  # its built-in class, auto_map ignored
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "model_type": "evil"}))  # only its own code could load it
    assert _load_in_fresh_process(folder) == "UserError"  # no prompt (stdin is closed), no code
    assert not marker.exists()


def test_pickle_weights_are_not_loaded(tmp_path: Path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=16))
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # a pickle: never unpickled by occiforge
    with pytest.raises(UserError, match="cannot load a causal LM"):
        lm.load_causal_lm(tmp_path)


def test_unknown_hub_id_offline_is_one_line_at_once(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match=r"^models.cpt.init: 'nobody/no-such-model' is not a local path and not in the Hugging Face cache"):
        lm.check_available("nobody/no-such-model", "models.cpt.init")
    with pytest.raises(UserError, match="not found: ./typo/model"):
        lm.check_available("./typo/model", "models.cpt.init")


def test_a_typo_in_init_fails_before_any_stage(tmp_path: Path, capsys):
    import yaml

    from occiforge.cli import main
    from tests.conftest import tiny_tree

    tree = tiny_tree(tmp_path / "run")
    tree["models"] = {"cpt": {"init": str(tmp_path / "no-such-model"), "targets": ["de"]}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(tree))
    assert main(["run", str(tmp_path / "r.yaml"), "-q"]) == 2
    assert "models.cpt.init: not found" in capsys.readouterr().err
    assert not (tmp_path / "run" / "data").exists()


def test_a_folder_that_is_no_model_is_said_so(tmp_path: Path, capsys):
    """Not transformers' "Unrecognized model ... should have a `model_type` key", nor a tokenizer error cut at "one of:"."""
    from occiforge.cli import main

    (tmp_path / "run" / "models").mkdir(parents=True)
    with pytest.raises(UserError, match=r"no config.json in it \(not a Hugging Face model folder\)$"):
        lm.load_config(tmp_path / "run")
    assert main(["chat", "--model", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == f"occiforge: error: chat --model: {tmp_path / 'run'} is not a model folder (no config.json)"


def test_a_hub_dataset_check_knows_local_paths_and_every_offline_spelling(monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    def unreachable(self, repo_id, **kw):
        raise OSError("Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", unreachable)
    with pytest.raises(UserError, match=r"^models.chat.data: hf:./chats: not found$"):  # was HFValidationError's traceback
        lm.check_hub_dataset("./chats", "models.chat.data")
    with pytest.raises(UserError, match="needs the network"):
        lm.check_hub_dataset("org/chats", "models.chat.data")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # HF_HUB_OFFLINE=true/yes/on/1, as huggingface_hub reads it
    lm.check_hub_dataset("org/chats", "models.chat.data")  # offline: the cache decides, when it is read
