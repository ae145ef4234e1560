"""The release stage: Hub-ready folders whose cards repeat the manifests' numbers, dry runs and
pushes that never leak the token, and the bad inputs (no token, no evaluation, unknown model).

Most tests read the session's `demo_run` (the demo recipe has a `release:` section) or a copy of
it in which only the release stage runs again with other settings, a few seconds each.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, ClassVar

import huggingface_hub
import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from occiforge.cli import main
from occiforge.errors import UserError
from occiforge.release.export import export_model
from tests.conftest import REPO, tiny_tree

DEMO = str(REPO / "recipes" / "demo.yaml")
SECRET = "hf_occiforgeTestSecret0123456789abcdef"


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def expected_results(run: Path, name: str) -> dict[tuple[str, str, str], float]:
    """(dataset type, config, metric) -> value, straight from eval/<model>/results.json and the leaderboard."""
    res, metric_of = _json(run / "eval" / name / "results.json"), _json(run / "eval" / "leaderboard.json")["metric"]
    want = {("heldout", lang, "bits_per_byte"): row["bpb"] for lang, row in res["bpb"].items()}
    for task, per_lang in res.get("mc", {}).items():
        want |= {(task, lang, metric_of[task]): row[metric_of[task]] for lang, row in per_lang.items()}
    return want


def test_released_folders_load_and_cards_repeat_the_manifests(demo_run: Path):
    # the whole model registry: trained models, the merge and the mixtures
    registry = {m["name"]: m for stage in ("models", "merge", "moe") for m in _json(demo_run / stage / "manifest.json")["models"]}
    released = _json(demo_run / "release" / "manifest.json")["released"]
    assert list(released) == list(registry) and {"moe-ft", "merged"} <= set(released)  # default: every model
    for name, rec in registry.items():
        folder = demo_run / "release" / name
        files = {p.name for p in folder.iterdir()}
        assert {"README.md", "config.json", "generation_config.json", "tokenizer.json", "model.safetensors"} <= files, name
        assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".json.tmp"))], files
        model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
        eos = model.generation_config.eos_token_id  # an instruct model also stops at its end-of-turn token
        assert tok("Der Zug")["input_ids"][0] == tok.bos_token_id and tok.eos_token_id in (eos if isinstance(eos, list) else [eos])
        trained, shipped = _weights(demo_run / rec["folder"]), _weights(folder)
        assert trained.keys() == shipped.keys() and all(torch.equal(trained[k], shipped[k]) for k in trained)

        card = ModelCard.load(folder / "README.md")
        got = {(r.dataset_type, r.dataset_config, r.metric_type): r.metric_value for r in card.data.eval_results}
        assert got == expected_results(demo_run, name), name  # every number exactly, none extra
        assert card.data.license == "apache-2.0" and card.data.model_name == f"occiforge-demo-{name}"
        if rec.get("mixture") is None:  # a merge or a mixture: no training data of its own
            continue
        assert set(card.data.language) == {lang for lang, w in rec["mixture"].items() if w > 0}
        assert card.data.language[0] == (rec["target"] or card.data.language[0])  # the target language first
        assert f"| positions trained (steps × sequences per step × sequence length) | {rec['tokens_seen']:,} |" in card.text and f"| steps | {rec['steps']:,} |" in card.text
        man = _json(demo_run / rec["folder"] / "manifest.json")
        assert f"| final training loss | {man['final_loss']:.3f} |" in card.text
        assert f"| hardware | {man['device']} |" in card.text and "| wall-clock | not recorded |" not in card.text
        if rec["init"] != "scratch":
            base_bpb = _json(demo_run / "eval" / rec["init"] / "results.json")["bpb"]["de"]["bpb"]
            assert f"| German | {_json(demo_run / 'eval' / name / 'results.json')['bpb']['de']['bpb']:.4f} | {base_bpb:.4f} |" in card.text


@pytest.fixture
def run_copy(demo_run: Path, tmp_path: Path) -> Path:
    """A copy of the demo run (without its release) in which the release stage can run again."""
    dst = tmp_path / "run"
    shutil.copytree(demo_run, dst, ignore=shutil.ignore_patterns("release", ".work"))
    return dst


def _release(run: Path, *sets: str) -> int:
    args = ["release", "-c", DEMO, "--set", f"run_dir={run}"]
    for s in sets:
        args += ["--set", s]
    return main(args)


class FakeHub:
    """Stands in for huggingface_hub.HfApi: records what would have been sent."""

    calls: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def __init__(self, token: str | None = None, **_: Any) -> None:
        FakeHub.calls.append(("init", {"token": token}))

    def whoami(self) -> dict[str, str]:
        return {"name": "someone"}

    def create_repo(self, repo_id: str, **kw: Any) -> Any:
        FakeHub.calls.append(("create_repo", {"repo_id": repo_id, **kw}))
        return type("RepoUrl", (), {"repo_id": repo_id if "/" in repo_id else f"someone/{repo_id}"})()

    def upload_folder(self, **kw: Any) -> Any:
        FakeHub.calls.append(("upload_folder", kw))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{kw['repo_id']}/commit/abc"})()


def test_dry_run_then_push_and_the_token_appears_nowhere(run_copy: Path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    FakeHub.calls = []
    assert _release(run_copy, "release.models=[cpt-de]") == 0  # push: false, token present: still a dry run
    assert FakeHub.calls == []
    dry = _json(run_copy / "release" / "manifest.json")["released"]["cpt-de"]
    assert dry["pushed"] is False and "model.safetensors" in dry["files"]
    assert "would upload" in capsys.readouterr().err

    assert _release(run_copy, "release.models=[cpt-de]", "release.push=true", "release.org=occiglot") == 0
    uploads = [kw for what, kw in FakeHub.calls if what == "upload_folder"]
    assert [u["repo_id"] for u in uploads] == ["occiglot/occiforge-demo-cpt-de"]
    assert Path(uploads[0]["folder_path"]) == run_copy / "release" / "cpt-de"
    assert ("create_repo", {"repo_id": "occiglot/occiforge-demo-cpt-de", "private": True, "exist_ok": True, "repo_type": "model"}) in FakeHub.calls
    assert {kw["token"] for what, kw in FakeHub.calls if what == "init"} == {SECRET}  # handed to the client only
    assert _json(run_copy / "release" / "manifest.json")["released"]["cpt-de"]["pushed"] is True
    logs = capsys.readouterr()
    assert SECRET not in logs.out + logs.err
    leaks = [p for p in run_copy.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaks == []


def test_push_without_a_token_is_one_line_exit_2_and_nothing_runs(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    monkeypatch.setattr(huggingface_hub, "HfApi", None)  # any use of the client would fail loudly
    tree = tiny_tree(tmp_path / "run", release={"push": True})
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tree))
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "release.push is true but there is no Hugging Face token" in err and "nothing was uploaded" in err
    assert not (tmp_path / "run").exists()  # refused before any stage ran


def test_a_model_that_was_not_evaluated_says_so_and_shows_no_numbers(run_copy: Path):
    # eval off: the results on disk from the demo's eval must not be used (they could be stale)
    assert _release(run_copy, "eval.bpb=false", "eval.mc=[]", "release.models=[cpt-de]") == 0
    card = ModelCard.load(run_copy / "release" / "cpt-de" / "README.md")
    assert card.data.eval_results is None and "model-index" not in card.content
    assert "This model was not evaluated in this run" in card.text and "Bits per byte" not in card.text
    assert _json(run_copy / "release" / "manifest.json")["released"]["cpt-de"]["evaluated"] is False


def test_weights_are_sharded_above_max_shard_size(run_copy: Path):
    assert _release(run_copy, "release.models=[base]", "release.max_shard_size=600KB") == 0
    folder = run_copy / "release" / "base"
    index = _json(folder / "model.safetensors.index.json")
    shards = set(index["weight_map"].values())
    assert len(shards) >= 2 and all((folder / s).stat().st_size < 2_000_000 for s in shards)
    trained = _weights(run_copy / "models" / "base")
    loaded = AutoModelForCausalLM.from_pretrained(folder).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in trained.items())


def test_unknown_model_in_release_models_is_one_line(run_copy: Path, capsys):
    assert _release(run_copy, "release.models=[nope]") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "release.models: 'nope' is not a model of this run" in err and "cpt-de" in err


def test_instruct_model_ships_its_chat_template(tmp_path: Path):
    from tests.eval.conftest import build_tiny_model

    src = build_tiny_model(tmp_path / "sft", texts=["hello world, a tiny corpus for a tiny tokenizer"] * 20, vocab_size=300)
    with pytest.raises(UserError, match="must carry the chat template"):
        export_model(src, tmp_path / "out0", "sft", "5GB")
    template = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
    tok = AutoTokenizer.from_pretrained(src)
    tok.chat_template = template
    tok.save_pretrained(src)
    files = export_model(src, tmp_path / "out", "sft", "5GB")
    assert "config.json" in files and "generation_config.json" in files
    shipped = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert shipped.chat_template == template
    assert shipped.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "<s>user: hi</s>"
