"""`kind: sft` end to end on a tiny recipe: conversations stage, instruct model in the registry,
sample answers, `occiforge chat`, and bad input as one line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from occiforge.cli import main
from tests.conftest import REPO, tiny_tree


def _sft_tree(run: Path, **model: object) -> dict:
    tree = tiny_tree(run, eval={"bpb": False}, report={"enabled": False})
    tree["train"].update(seq_len=96, steps=6, val_every=2)
    tree["train"]["architecture"]["max_position_embeddings"] = 128
    tree["models"]["chat"] = {"kind": "sft", "init": "cpt-de", "steps": 4,
                              "data": [{"path": "builtin:demo", "languages": ["en", "de"]}], **model}
    return tree


def _write(tmp_path: Path, tree: dict) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("sft")
    assert main(["run", _write(tmp, _sft_tree(tmp / "run")), "-q", "--to", "train"]) == 0
    return tmp / "run"


@pytest.mark.slow
def test_instruct_model_is_published_with_its_data_and_samples(sft_run: Path):
    rows = {r["name"]: r for r in json.loads((sft_run / "models" / "manifest.json").read_text())["models"]}
    chat = rows["chat"]
    assert chat["kind"] == "sft" and chat["init"] == "cpt-de" and chat["mixture"] == {"en": 1.0, "de": 1.0}
    assert set(chat["per_language"]) == {"en", "de"} and all(u["epochs"] > 0 for u in chat["per_language"].values())
    samples = json.loads((sft_run / "models" / "chat" / "samples.json").read_text())
    assert [s["lang"] for s in samples] == ["en", "de"]
    assert all(s["prompt"][-1]["role"] == "user" and isinstance(s["answer"], str) and s["reference"] for s in samples)
    conv = json.loads((sft_run / "conversations" / "manifest.json").read_text())
    (per_lang,) = [s["per_language"] for s in conv["sources"].values()]
    assert per_lang["de"]["heldout"]["conversations"] == 1 and per_lang["de"]["train"]["targets"] > 0


def test_an_instruct_models_validation_loss_is_on_its_held_out_conversations(sft_run: Path):
    """Not on the pre-training held-out text (which it was, README notwithstanding): the last logged
    validation equals the saved model's loss on the answers of its held-out conversations."""
    import torch

    from occiforge.io import open_token_docs
    from occiforge.lm import load_causal_lm
    from occiforge.recipe import validate_tree
    from occiforge.train import monitor, sft

    (pm,) = [m for m in validate_tree(_sft_tree(sft_run), "r.yaml").plan() if m.name == "chat"]
    folder = sft_run / "models" / "chat"
    logged = [json.loads(x) for x in (folder / "train_log.jsonl").read_text().splitlines()][-1]["val_loss"]
    model = load_causal_lm(folder).eval()
    convs = monitor.conversation_rows(sft.chat_docs(sft_run / "conversations", pm, "heldout"), 97, 4096)
    text = monitor.text_rows({x: open_token_docs(sft_run / "tokens" / x / "heldout")[0] for x in ("en", "de")}, 97, 4096)
    with torch.no_grad():
        on_convs, on_text = monitor.validation(convs, 4)(model), monitor.validation(text, 4)(model)
    assert set(logged) == {"en", "de"} and logged == pytest.approx(on_convs, abs=1e-4)
    assert logged != pytest.approx(on_text, abs=1e-3), (logged, on_text)  # what the old wiring logged (to 1e-4)


@pytest.mark.slow
def test_saved_instruct_model_answers_through_its_chat_template(sft_run: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = sft_run / "models" / "chat"
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.chat_template and end in model.generation_config.eos_token_id
    assert model.get_input_embeddings().num_embeddings == len(tok)
    ids = tok.apply_chat_template([{"role": "user", "content": "Hallo!"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    long = "Hallo! " * 200  # beyond the model's 128 positions: said on stderr, not answered
    proc = subprocess.run([sys.executable, "-m", "occiforge.cli", "chat", "--model", str(folder), "--max-new-tokens", "4"],
                          check=False, input=f"Hallo!\n{long}\nWie geht es?\n", capture_output=True, text=True, cwd=REPO, timeout=120)
    lines = proc.stdout.splitlines()  # one line out for each line in: the refused one empty
    assert proc.returncode == 0 and len(lines) == 3 and lines[1] == "", proc.stderr[-500:]
    assert "has room for 124 (128 positions - 4 for the answer): say it shorter" in proc.stderr, proc.stderr[-500:]


@pytest.mark.slow
def test_chat_without_room_for_a_prompt_is_one_line(sft_run: Path, capsys):
    assert main(["chat", "--model", str(sft_run / "models" / "chat"), "--max-new-tokens", "128"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "occiforge: error: --max-new-tokens 128 leaves no room for a prompt in the model's 128 positions", err


def test_a_stage_run_alone_never_reads_a_missing_or_stale_upstream_stage(tmp_path: Path, capsys):
    """`occiforge conversations` over an old tokenizer folder encoded with the old vocabulary and wrote
    a manifest that looked current for the new one: the instruct model then trained on the old ids."""
    recipe = _write(tmp_path, _sft_tree(tmp_path / "run"))
    assert main(["conversations", "-c", recipe, "-q"]) == 2
    assert "stage 'tokenizer' has no up-to-date output" in capsys.readouterr().err
    assert main(["run", recipe, "-q", "--to", "tokenizer"]) == 0
    assert main(["conversations", "-c", recipe, "-q", "--set", "tokenizer.vocab_size=640"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "stage 'tokenizer' has no up-to-date output" in err and "occiforge tokenizer" in err
    assert not (tmp_path / "run" / "conversations").exists()


@pytest.mark.parametrize("where, edit", [
    ("models.chat.data", lambda t: t["models"]["chat"].update(data=[{"path": "hf:nobody/nochats", "languages": ["de"]}])),
    ("eval.mc.0", lambda t: t["eval"].update(mc=[{"path": "hf:nobody/mcx", "template": "m_arc"}])),
])
def test_an_unreachable_hub_dataset_is_one_line_before_any_work(tmp_path: Path, capsys, monkeypatch, where, edit):
    """As data sources are: not a minute of retries and an error after the data and tokenizer stages."""
    import huggingface_hub

    def offline(self, repo_id, **kw):
        raise OSError("Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", offline)
    tree = _sft_tree(tmp_path / "run")
    edit(tree)
    assert main(["run", _write(tmp_path, tree), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{where}: hf:nobody/" in err and "needs the network" in err, err
    assert not (tmp_path / "run" / "data").exists()


def test_a_hub_task_without_its_template_names_its_key_before_any_work(tmp_path: Path, capsys):
    tree = _sft_tree(tmp_path / "run")
    tree["eval"]["mc"] = [{"path": "builtin:demo_qa"}, {"path": "hf:org/mc"}]
    assert main(["run", _write(tmp_path, tree), "-q"]) == 2
    assert "eval.mc.1: hf:org/mc: name the template its records follow" in capsys.readouterr().err
    assert not (tmp_path / "run" / "data").exists()


@pytest.mark.slow
def test_a_conversation_without_an_assistant_turn_is_one_line_and_nothing_is_written(tmp_path: Path, capsys):
    folder = tmp_path / "chats"
    folder.mkdir()
    good = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
    (folder / "de.jsonl").write_text("\n".join(json.dumps(r) for r in [good, good, {"messages": [{"role": "user", "content": "Hi"}]}]))
    tree = _sft_tree(tmp_path / "run", data=[{"path": str(folder), "languages": ["de"]}])
    assert main(["run", _write(tmp_path, tree), "-q", "--to", "conversations"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "models.chat:" in err and "de.jsonl:3" in err and "no assistant turn" in err
    assert not (tmp_path / "run" / "conversations").exists()


@pytest.mark.slow
def test_unreadable_conversation_lines_are_one_line_errors_and_edits_are_new_input(tmp_path: Path, capsys):
    folder = tmp_path / "chats"
    folder.mkdir()
    good = json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]})
    recipe = _write(tmp_path, _sft_tree(tmp_path / "run", data=[{"path": str(folder), "languages": ["de"]}]))
    for bad, says in (('{"messages": [', "de.jsonl:3: invalid JSON"), ("[1, 2]", "de.jsonl:3: a record must be a JSON object")):
        (folder / "de.jsonl").write_text(f"{good}\n{good}\n{bad}\n")
        assert main(["run", recipe, "-q", "--to", "conversations"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and says in err, err
        assert not (tmp_path / "run" / "conversations").exists()
    (folder / "de.jsonl").write_text(f"{good}\n{good}\n")
    assert main(["run", recipe, "-q", "--to", "conversations"]) == 0
    (folder / "de.jsonl").write_text(f"{good}\n{good}\n{good}\n")  # an edited file is new input: tokenized again
    assert main(["run", recipe, "-q", "--to", "conversations"]) == 0
    (src,) = json.loads((tmp_path / "run" / "conversations" / "manifest.json").read_text())["sources"].values()
    assert src["per_language"]["de"]["train"]["conversations"] == 2  # 3, one held out


@pytest.mark.slow
def test_chat_with_a_tokenizer_larger_than_the_model_is_one_line(sft_run: Path, tmp_path: Path):
    import shutil

    mixed = tmp_path / "mixed"  # the base vocabulary's weights beside the chat tokenizer (two more tokens)
    shutil.copytree(sft_run / "models" / "chat", mixed)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(sft_run / "models" / "cpt-de" / name, mixed / name)
    proc = subprocess.run([sys.executable, "-m", "occiforge.cli", "chat", "--model", str(mixed)], check=False,
                          input="Hallo!\n", capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr[-500:]
    assert "tokenizer has" in proc.stderr and "embedding has" in proc.stderr and str(mixed) in proc.stderr


def test_sequence_longer_than_the_model_positions_is_refused_before_training(tmp_path: Path, capsys):
    """A loaded model's positions are read from its config (the recipe's own architecture is checked by validation)."""
    from transformers import LlamaConfig

    from occiforge.recipe import load_recipe
    from occiforge.train.plan import check_positions

    LlamaConfig(max_position_embeddings=64).save_pretrained(tmp_path / "ext")
    tree = tiny_tree(tmp_path / "run")
    tree["train"]["seq_len"] = 64  # rows of 65 tokens, positions 64
    tree["train"]["architecture"]["max_position_embeddings"] = 128
    tree["models"] = {"ext": {"init": str(tmp_path / "ext"), "mixture": {"en": 1.0}}}
    recipe = load_recipe(_write(tmp_path, tree))
    with pytest.raises(Exception, match=r"models.ext \(ext\): train.seq_len 64 .* above the model's 64 positions"):
        check_positions(recipe, recipe.plan())


@pytest.mark.slow
def test_a_resumed_instruct_model_is_built_from_its_checkpoint_and_ends_as_an_uninterrupted_one(
        sft_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    """The resume builds the model (chat rows, generation config, buffers) from the checkpoint alone: the
    model it started from is never loaded again, and the result equals `sft_run`'s uninterrupted one."""
    import torch
    from safetensors.torch import load_file

    from occiforge.train import trainer

    recipe, real_train = _write(tmp_path, _sft_tree(tmp_path / "run")), trainer.train

    def stopped_in_chat(model, get_batch, spec, ckpt_dir, **kw):  # as a SIGTERM during chat
        if ckpt_dir.name == ".chat.ckpt":
            calls = iter(range(1000))
            kw["hooks"].should_stop = lambda: next(calls) >= 2
        return real_train(model, get_batch, spec, ckpt_dir, **kw)

    monkeypatch.setattr(trainer, "train", stopped_in_chat)
    assert main(["run", recipe, "-q", "--to", "train"]) == 0
    err = capsys.readouterr().err
    assert "checkpoint at step 3 written" in err, err  # the 3rd look is after step 2 (the 1st: before training)
    monkeypatch.setattr(trainer, "train", real_train)
    monkeypatch.setattr(trainer, "build_model", lambda *a, **k: pytest.fail("a resume loaded its init model"))
    assert main(["run", recipe, "--to", "train"]) == 0
    out = capsys.readouterr()
    assert "chat: resuming from step 3" in out.out + out.err, out

    ours, straight = tmp_path / "run" / "models" / "chat", sft_run / "models" / "chat"
    a, b = load_file(ours / "model.safetensors"), load_file(straight / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6, rtol=0) for k in a)
    for name in ("config.json", "generation_config.json"):
        assert json.loads((ours / name).read_text()) == json.loads((straight / name).read_text()), name
