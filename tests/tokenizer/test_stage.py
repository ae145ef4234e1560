"""The tokenizer stage in recipes: report, parity dev set, extension + embedding init in one run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from occiforge.cli import main
from occiforge.errors import UserError
from occiforge.io import open_tokens
from occiforge.lm import load_tokenizer
from occiforge.recipe import ArchitectureConfig
from occiforge.tokenizer.train import save_hf
from occiforge.train.embeddings import TIED_SCALES
from occiforge.train.model import build_model, preflight_vocab
from tests.conftest import tiny_tree
from tests.tokenizer.conftest import demo_texts, write_parallel


def _run(tree: dict, folder: Path, *extra: str) -> int:
    path = folder / f"{tree['name']}.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return main(["run", str(path), "-q", *extra])


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny English base model whose tokenizer was measured against a parallel dev set."""
    root = tmp_path_factory.mktemp("tok-stage")
    dev = write_parallel(root / "dev", {lang: [d.replace("\n", " ") for d in demo_texts(lang)[:5]] for lang in ("en", "el", "bg")})
    tree = tiny_tree(root / "base", langs=("en", "el"), name="base")
    tree["tokenizer"] = {"vocab_size": 600, "parallel": str(dev)}
    tree["models"] = {"base": {"mixture": {"en": 1.0}}}
    assert _run(tree, root) == 0
    return root


def test_stage_report_and_html(base_run: Path):
    folder = base_run / "base" / "tokenizer"
    report = json.loads((folder / "report.json").read_text())
    assert sorted(report) == ["el", "en"]
    for row in report.values():
        assert {"tokens", "bytes_per_token", "fertility", "continued_words", "tokens_per_word", "parity"} <= set(row)
    tok = load_tokenizer(str(folder))
    dev = {lang: (base_run / "dev" / f"{lang}.txt").read_text().splitlines() for lang in ("en", "el")}
    n = {lang: sum(len(ids) for ids in tok(lines, add_special_tokens=False)["input_ids"]) for lang, lines in dev.items()}
    assert report["en"]["parity"] == 1.0 and report["el"]["parity"] == pytest.approx(n["el"] / n["en"], abs=1e-4)
    html = (folder / "section.html").read_text(encoding="utf-8")  # the run report's tokenizer section
    assert html.count("data:image/png;base64,") == 2 and "<table>" in html and "<th>el</th>" in html
    assert "Extension" not in html


def _extension_tree(base_run: Path, name: str, pretrained: str, **extend: object) -> dict:
    tree = tiny_tree(base_run / name, langs=("en", "el"), name=name)
    tree["tokenizer"] = {"pretrained": pretrained, "extend": {"new_tokens": 150, **extend}}
    tree["models"] = {"cpt": {"init": str(base_run / "base" / "models" / "base"), "targets": ["el"], "steps": 4}}
    return tree


def test_extend_initialise_and_continue_in_one_run(base_run: Path):
    base_model = base_run / "base" / "models" / "base"
    tree = _extension_tree(base_run, "ext", str(base_model), languages="auto", threshold=3.0)
    assert _run(tree, base_run) == 0
    run = base_run / "ext"
    record = json.loads((run / "tokenizer" / "extension.json").read_text())
    before = record["fertility_before"]
    assert record["languages"] == [lang for lang in ("en", "el") if before[lang] > 3.0] == ["el"]  # the rule, applied
    assert record["base_vocab_size"] == 600 and record["new_tokens"] == len(record["added"]) == 150
    assert json.loads((run / "tokenizer" / "report.json").read_text())["el"]["fertility"] < before["el"]
    assert "Extension" in (run / "tokenizer" / "section.html").read_text(encoding="utf-8")
    cpt = AutoModelForCausalLM.from_pretrained(str(run / "models" / "cpt-el"))
    assert cpt.get_input_embeddings().num_embeddings == 750
    assert "cpt-el" in json.loads((run / "eval" / "results.json").read_text())["bpb"]

    # what the train stage built before training (default init, decomposition-calibrated, tied rows):
    # old rows kept; a new row = (its pieces' mean, less one shared direction: the Greek training
    # text's mean hidden state) times one shared factor
    tok = load_tokenizer(str(run / "tokenizer"))
    streams = {lang: open_tokens(run / "tokens", lang) for lang in ("en", "el")}
    model = build_model(str(base_model), ArchitectureConfig(), tok, 0, run / "models", set(), streams, extension=record)
    old = AutoModelForCausalLM.from_pretrained(str(base_model)).get_input_embeddings().weight
    new = model.get_input_embeddings().weight
    assert torch.equal(new[:600], old)
    plain = torch.stack([old[a["pieces"]].mean(0) for a in record["added"][:20]])
    rows = new[[a["id"] for a in record["added"][:20]]]
    with torch.no_grad():  # for one of the candidate factors, the unscaled rows moved along one line only
        ranks = [int(torch.linalg.matrix_rank(plain - rows / scale, atol=1e-4)) for scale in TIED_SCALES]
    assert ranks.count(1) == 1 and not torch.allclose(rows, plain)
    with pytest.raises(UserError, match="needs training text in el"):  # no text, no centring
        build_model(str(base_model), ArchitectureConfig(), tok, 0, run / "models", set(), extension=record)


def test_extension_of_another_tokenizer_is_refused(base_run: Path, small_bpe, capsys: pytest.CaptureFixture[str]):
    other = base_run / "other-tok"
    save_hf(small_bpe, other)  # 400 tokens, not the base model's 600
    tree = _extension_tree(base_run, "wrong", str(other), languages=["el"])
    assert _run(tree, base_run) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # (model loading may draw a progress bar first)
    assert last.startswith("occiforge: error: models.cpt (cpt-el): init ") and "extended a different tokenizer" in last
    assert not (base_run / "wrong" / "models" / "cpt-el").exists()


def test_a_larger_foreign_vocabulary_is_refused_before_training(base_run: Path, capsys: pytest.CaptureFixture[str]):
    texts = [d for lang in ("en", "el") for d in demo_texts(lang)]
    from occiforge.recipe import TokenizerConfig
    from occiforge.tokenizer.train import train_tokenizer

    big = base_run / "big-tok"
    tok = save_hf(train_tokenizer(texts, TokenizerConfig(vocab_size=900)), big)
    init = str(base_run / "base" / "models" / "base")
    with pytest.raises(UserError, match="tokenizer has 900 tokens but the model's embedding has 600 rows"):
        preflight_vocab(["scratch", "base", init], load_tokenizer(str(big)), known={"base"}, extension=None)
    tree = tiny_tree(base_run / "big", langs=("en", "el"), name="big")
    tree["tokenizer"] = {"pretrained": str(big)}
    tree["models"] = {"cpt": {"init": init, "targets": ["el"], "steps": 4}}
    assert _run(tree, base_run) == 2
    assert "900 tokens" in capsys.readouterr().err
    preflight_vocab([init], load_tokenizer(init), known=set(), extension=None)  # its own tokenizer: fine
    assert len(tok) == 900


def test_changing_the_embedding_init_retrains_only_the_models_it_touches(base_run: Path):
    """The init belongs to the model: tokenizer, token shards and a model trained from scratch stay."""
    tree = _extension_tree(base_run, "init", str(base_run / "base" / "models" / "base"), languages=["el"])
    tree["models"]["fresh"] = {"mixture": {"en": 1.0}, "steps": 2}  # scratch: new rows are its own
    tree["report"] = {"enabled": False}
    assert _run(tree, base_run) == 0
    run = base_run / "init"
    files = ["tokenizer/tokenizer.json", "tokenizer/manifest.json", "tokens/manifest.json", "models/fresh/model.safetensors",
             "models/cpt-el/model.safetensors"]
    before = {f: (run / f).stat().st_mtime_ns for f in files}
    assert _run(tree, base_run, "--set", "models.cpt.embedding_init=mean") == 0
    after = {f: (run / f).stat().st_mtime_ns for f in files}
    assert [f for f in files if after[f] != before[f]] == ["models/cpt-el/model.safetensors"]
