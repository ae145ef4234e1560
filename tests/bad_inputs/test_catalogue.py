"""The bad-input catalogue: each case is a user mistake or a damaged input, and the promise is the
same for all of them: one line on stderr naming the input, exit code 2, no traceback, and every
artifact written before is unchanged. The cases and their messages are listed in docs/errors.md
(a test keeps the two in step).

A case is (id, setup, argv, fragment): `setup(tmp, run)` prepares files and returns the argv
(`run` is a finished tiny run, copied per case so a case can damage it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from occiforge.cli import main
from tests.conftest import REPO, tiny_tree

Setup = Callable[[Path, Path], list[str]]


def _recipe(tmp: Path, run: Path, edit: Callable[[dict], Any] | None = None, raw: str | None = None) -> str:
    path = tmp / "r.yaml"
    if raw is not None:
        path.write_text(raw, encoding="utf-8")
        return str(path)
    tree = tiny_tree(run)
    if edit is not None:
        edit(tree)
    text = yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)
    path.write_text(text.replace("{tmp}", str(tmp)), encoding="utf-8")
    return str(path)


def run_with(edit: Callable[[dict], Any], *extra: str, command: str = "run") -> Setup:
    def setup(tmp: Path, run: Path) -> list[str]:
        path = _recipe(tmp, run, edit)
        return [command, path, *extra] if command in ("run", "validate") else [command, "-c", path, *extra]
    return setup


def raw(text: str) -> Setup:
    return lambda tmp, run: ["validate", _recipe(tmp, run, raw=text)]


def sets(*overrides: str) -> Setup:
    return lambda tmp, run: ["validate", _recipe(tmp, run), *[a for o in overrides for a in ("--set", o)]]


def argv(*args: str) -> Setup:
    return lambda tmp, run: [a.replace("{tmp}", str(tmp)) for a in args]


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def edit(tree: dict) -> None:
        node = tree
        keys = path.split(".")
        for k in keys[:-1]:
            node = node.setdefault(k, {}) if not isinstance(node, list) else node[int(k)]
        if isinstance(node, list):
            node[int(keys[-1])] = value
        else:
            node[keys[-1]] = value
    return edit


def _drop(key: str) -> Callable[[dict], None]:
    return lambda tree: tree.pop(key)


def _model(**spec: Any) -> Callable[[dict], None]:
    return lambda tree: tree["models"].update(spec)


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def with_files(files: dict[str, str | bytes], then: Setup) -> Setup:
    def setup(tmp: Path, run: Path) -> list[str]:
        for rel, content in files.items():
            _write(tmp / rel, content)
        return then(tmp, run)
    return setup


def _source(folder: str) -> Callable[[dict], None]:
    return lambda tree: tree["data"].update(sources=[{"name": "mine", "path": folder}])


UK = {"code": "uk", "iso3": "ukr", "script": "Cyrl", "name": "Ukrainian"}

CASES: list[tuple[str, Setup, str]] = [
    # -- the recipe file ------------------------------------------------------------------------
    ("recipe-missing", argv("run", "{tmp}/nope.yaml"), "recipe file not found"),
    ("recipe-invalid-yaml", raw("name: x\nlanguages: [en\n"), "invalid YAML"),
    ("recipe-not-a-mapping", raw("- a\n- b\n"), "a recipe must be a YAML mapping"),
    ("recipe-empty", raw(""), "a recipe must be a YAML mapping"),
    ("recipe-not-utf8", lambda tmp, run: ["validate", str(_write(tmp / "r.yaml", b"name: \xff\xfe\n"))], "r.yaml"),
    ("key-unknown-top", run_with(_set("trian", {"steps": 3}), command="validate"), "trian: unknown key"),
    ("key-unknown-nested", run_with(_set("train.optim.lrr", 0.1), command="validate"), "train.optim.lrr: unknown key"),
    ("type-wrong", run_with(_set("train.steps", "many"), command="validate"), "train.steps: Input should be a valid integer"),
    ("value-negative", run_with(_set("train.steps", -3), command="validate"), "train.steps: Input should be greater than or equal to 1"),
    ("name-pattern", run_with(_set("name", "my run"), command="validate"), "name: String should match pattern"),
    ("data-missing", run_with(_drop("data"), command="validate"), "data: Field required"),
    ("sources-empty", run_with(_set("data.sources", []), command="validate"), "data.sources: List should have at least 1 item"),
    ("heldout-out-of-range", run_with(_set("data.heldout_fraction", 1.5), command="validate"), "data.heldout_fraction"),
    ("lid-threshold-range", run_with(_set("data.lid.threshold", 2), command="validate"), "data.lid.threshold"),
    ("languages-empty", run_with(_set("languages", []), command="validate"), "languages: List should have at least 1 item"),
    ("language-unknown", run_with(_set("languages", ["en", "zz"]), command="validate"), "unknown language code 'zz'"),
    ("precision-unknown", run_with(_set("train.precision", "fp8"), command="validate"), "train.precision"),
    ("schedule-unknown", run_with(_set("train.optim.schedule", "zigzag"), command="validate"), "train.optim.schedule"),
    ("tokenizer-kind-unknown", run_with(_set("tokenizer.kind", "wordpiece"), command="validate"), "tokenizer.kind"),
    ("extend-without-pretrained", run_with(_set("tokenizer.extend", {"new_tokens": 10}), command="validate"), "extend needs 'pretrained'"),
    ("parity-without-parallel", run_with(_set("tokenizer.balance_by", "parity"), command="validate"), "needs 'parallel'"),
    ("eval-fewshot-negative", run_with(_set("eval.fewshot", -1), command="validate"), "eval.fewshot"),
    # -- models -----------------------------------------------------------------------------------
    ("model-language-not-in-run", run_with(_model(joint={"mixture": {"en": 1, "fr": 1}}), command="validate"), "['fr'] are not in 'languages'"),
    ("model-init-order", run_with(lambda t: t.update(models={"cpt": {"init": "base", "targets": ["de"]}, "base": {"mixture": {"en": 1}}}), command="validate"), "must be defined before"),
    ("model-init-group", run_with(_model(more={"init": "cpt", "mixture": {"de": 1}}), command="validate"), "is a per-target group"),
    ("model-name-clash", run_with(_model(**{"cpt-de": {"init": "base", "mixture": {"de": 1}}}), command="validate"), "model names must be unique"),
    ("model-mixture-and-targets", run_with(_set("models.cpt.mixture", {"de": 1}), command="validate"), "give exactly one of 'mixture'"),
    ("model-neither", run_with(_model(empty={"init": "base"}), command="validate"), "give exactly one of 'mixture'"),
    ("model-kind-unknown", run_with(_model(odd={"kind": "distill", "mixture": {"en": 1}}), command="validate"), "models.odd"),
    ("model-weight-negative", run_with(_model(neg={"mixture": {"en": -1}}), command="validate"), "mixture weights must be >= 0"),
    ("model-replay-range", run_with(_set("models.cpt.replay", 1.5), command="validate"), "models.cpt.replay"),
    ("model-embedding-init", run_with(_set("models.cpt.embedding_init", "zeros"), command="validate"), "models.cpt.embedding_init"),
    ("model-init-missing-path", run_with(_model(ext={"init": "./no/such/model", "mixture": {"en": 1}})), "models.ext.init: not found"),
    ("model-init-hub-offline", run_with(_model(ext={"init": "nobody/no-such-model-xyz", "mixture": {"en": 1}})), "nobody/no-such-model-xyz"),
    # -- languages --------------------------------------------------------------------------------
    ("language-redefines-builtin", run_with(_set("add_languages", [{**UK, "code": "de"}]), command="validate"), "'de' is a built-in language"),
    ("language-bad-code", run_with(_set("add_languages", [{**UK, "code": "Ukrainian"}]), command="validate"), "add_languages.0.code"),
    ("language-bad-script", run_with(_set("add_languages", [{**UK, "script": "cyrillic"}]), command="validate"), "add_languages.0.script"),
    ("language-partial-prompt", run_with(_set("add_languages", [{**UK, "prompt": {"question": "Питання"}}]), command="validate"), "prompt words must be exactly"),
    # -- --set ------------------------------------------------------------------------------------
    ("set-no-equals", sets("train.steps"), "expected KEY=VALUE"),
    ("set-bad-index", sets("data.sources.5.name=x"), "is not a valid index"),
    ("set-into-scalar", sets("name.first=x"), "name: Input should be a valid string"),
    ("set-bad-yaml", sets("train.steps=[1, 2"), "value is not valid YAML"),
    ("set-unknown-key", sets("train.stepz=3"), "train.stepz: unknown key"),
    ("set-wrong-type", sets("train.batch_size=big"), "train.batch_size: Input should be a valid integer"),
    # -- command line and stage order -------------------------------------------------------------
    ("cli-unknown-command", argv("frobnicate"), "invalid choice: 'frobnicate'"),
    ("cli-unknown-flag", argv("run", "x.yaml", "--bogus"), "run: unrecognized arguments: --bogus (see occiforge run --help)"),
    ("cli-unknown-stage", argv("run", "x.yaml", "--from", "nowhere"), "invalid choice: 'nowhere'"),
    ("cli-stage-without-recipe", argv("train"), "give a recipe with -c RECIPE"),
    ("stage-before-input", lambda tmp, run: ["train", "-q", "-c", _recipe(tmp, tmp / "fresh")], "run `occiforge tokenizer` first"),
    ("stage-input-switched-off", run_with(_set("eval", {"bpb": False})), "reads 'eval', which this recipe switches off"),
    ("run-dir-is-a-file", lambda tmp, run: ["run", _recipe(tmp, _write(tmp / "afile", "x"))], "exists and is not a folder"),
    # -- data sources -----------------------------------------------------------------------------
    ("source-folder-missing", run_with(_source("{tmp}/corpus")), "folder not found"),
    ("source-language-file-missing", with_files({"corpus/en.jsonl": '{"text": "hello there", "lang": "en"}\n'},
                                               run_with(_source("{tmp}/corpus"))), "no de.jsonl"),
    ("data-empty-after-filtering", run_with(_set("data.filters.min_chars", 100000), "-q", command="data"), "no documents left for en, de"),
    # -- tokenizer --------------------------------------------------------------------------------
    ("tokenizer-pretrained-missing", run_with(_set("tokenizer.pretrained", "./no/tokenizer.json")), "tokenizer.pretrained: not found"),
    ("tokenizer-pretrained-offline", run_with(_set("tokenizer.pretrained", "nobody/no-such-tokenizer-xyz")), "nobody/no-such-tokenizer-xyz"),
    ("tokenizer-json-corrupt", with_files({"tok/tokenizer.json": "{not json"},
                                          run_with(_set("tokenizer.pretrained", "{tmp}/tok/tokenizer.json"), "-q")), "cannot load tokenizer"),
    # -- models on disk ---------------------------------------------------------------------------
    ("model-folder-without-weights", lambda tmp, run: _init_from(tmp, run, drop="model.safetensors"), "cannot load a causal LM"),
    ("model-weights-truncated", lambda tmp, run: _init_from(tmp, run, truncate="model.safetensors"), "cannot load a causal LM"),
    ("model-config-corrupt", lambda tmp, run: _init_from(tmp, run, corrupt="config.json"), "cannot read the model config"),
    ("extra-model-missing", run_with(_set("eval.extra_models", {"other": "./no/model"})), "eval.extra_models.other: not found"),
    # -- stand-alone eval inputs ------------------------------------------------------------------
    ("eval-model-missing", with_files({"x.jsonl": '{"text": "Some text.", "lang": "en"}\n'},
                                      argv("eval", "--model", "{tmp}/no-model", "--bpb", "{tmp}/x.jsonl")), "model folder not found"),
    ("eval-nothing-to-score", lambda tmp, run: ["eval", "--model", str(run / "models" / "base")], "nothing to score"),
    ("eval-bpb-file-missing", lambda tmp, run: ["eval", "--model", str(run / "models" / "base"), "--bpb", str(tmp / "none.jsonl")], "none.jsonl"),
    ("eval-bpb-invalid-json", with_files({"held.jsonl": '{"text": "ok", "lang": "en"}\n{oops\n'},
                                         lambda tmp, run: ["eval", "--model", str(run / "models" / "base"), "--bpb", str(tmp / "held.jsonl")]),
     "held.jsonl:2: invalid JSON"),
    ("eval-bpb-text-not-string", with_files({"held.jsonl": '{"text": 42, "lang": "en"}\n'},
                                            lambda tmp, run: ["eval", "--model", str(run / "models" / "base"), "--bpb", str(tmp / "held.jsonl")]),
     "held.jsonl:1"),
    ("eval-mc-answer-out-of-range", with_files({"mc/en.jsonl": '{"question": "Q?", "choices": ["a", "b"], "answer": 5}\n'},
                                               lambda tmp, run: ["eval", "--model", str(run / "models" / "base"), "--mc", str(tmp / "mc")]),
     "answer index 5 is out of range"),
    ("init-tokenizer-differs", lambda tmp, run: _init_with_another_tokenizer(tmp, run),
     "models.ext (ext): init '{tmp}/model': the run's tokenizer is not the model's own (2 of the"),
    # -- instruction tuning and chat ---------------------------------------------------------------
    ("sft-weights-differ-within-a-language",
     run_with(_model(chat={"kind": "sft", "init": "base", "data": [{"path": "builtin:demo", "languages": ["de"]},
                                                                    {"path": "{tmp}", "languages": ["de"], "weight": 3}]}),
              command="validate"),
     "de is in several sources with different weights"),
    ("sft-heldout-zero",
     run_with(_model(chat={"kind": "sft", "init": "base", "data": [{"path": "builtin:demo", "languages": ["de"], "heldout": 0}]}),
              command="validate"),
     "heldout: Input should be greater than or equal to 1"),
    ("sft-language-file-missing",
     with_files({"chats/en.jsonl": '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'},
                run_with(_model(chat={"kind": "sft", "init": "base", "data": [{"path": "{tmp}/chats", "languages": ["de"]}]}), "-q")),
     "models.chat.data: {tmp}/chats: no de.jsonl in"),
    ("sft-tokenizer-without-template",
     run_with(_model(chat={"kind": "sft", "init": "base", "chat_template": "tokenizer",
                           "data": [{"path": "builtin:demo", "languages": ["de"]}]}), "-q"),
     "models.chat: the run's tokenizer ("),
    ("chat-model-missing", argv("chat", "--model", "{tmp}/nowhere"), "chat --model: not found: {tmp}/nowhere"),
    ("chat-no-template", lambda tmp, run: ["chat", "--model", str(run / "models" / "base")], "has no chat template"),
    ("chat-vocab-mismatch", lambda tmp, run: _chat_tokenizer_on_base(tmp, run), "but the model's embedding has"),
    ("chat-max-new-tokens-zero", lambda tmp, run: ["chat", "--model", str(run / "models" / "base"), "--max-new-tokens", "0"],
     "expected a whole number of at least 1"),
    ("eval-mc-no-choices", with_files({"mc/en.jsonl": '{"question": "Q?", "choices": [], "answer": 0}\n'},
                                      lambda tmp, run: ["eval", "--model", str(run / "models" / "base"), "--mc", str(tmp / "mc")]),
     "'choices' are empty"),
]


def _chat_tokenizer_on_base(tmp: Path, run: Path) -> list[str]:
    """The base model's weights under a tokenizer with ChatML added: two ids it has no rows for."""
    from occiforge.chat import with_template
    from occiforge.lm import load_tokenizer

    folder = tmp / "mixed"
    shutil.copytree(run / "models" / "base", folder)
    with_template(load_tokenizer(folder), "chatml", "test").save_pretrained(str(folder))
    return ["chat", "--model", str(folder)]


def _init_with_another_tokenizer(tmp: Path, run: Path) -> list[str]:
    """A recipe starting from a copy of the base model whose own tokenizer has two ids swapped: same
    size, other tokens."""
    folder = tmp / "model"
    shutil.copytree(run / "models" / "base", folder)
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[300:302]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (folder / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    return ["run", "-q", _recipe(tmp, tmp / "fresh", _model(ext={"init": str(folder), "mixture": {"en": 1}}))]


def _init_from(tmp: Path, run: Path, drop: str = "", truncate: str = "", corrupt: str = "") -> list[str]:
    """A recipe whose model starts from a copy of the tiny run's base model, damaged one way."""
    folder = tmp / "model"
    shutil.copytree(run / "models" / "base", folder)
    if drop:
        (folder / drop).unlink()
    if truncate:
        data = (folder / truncate).read_bytes()
        (folder / truncate).write_bytes(data[: len(data) // 3])
    if corrupt:
        (folder / corrupt).write_text("{ not json")
    return ["run", "-q", _recipe(tmp, tmp / "fresh", _model(ext={"init": str(folder), "mixture": {"en": 1}}))]


def _fill(args: list[str], tmp: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)) for a in args]


def _digests(folder: Path) -> dict[str, str]:
    """Every artifact (hidden work folders such as `.work/` may come and go)."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run: the artifacts every case must leave unchanged."""
    tmp = tmp_path_factory.mktemp("catalogue")
    path = tmp / "r.yaml"
    tree = tiny_tree(tmp / "run")
    tree["models"] = {"base": {"mixture": {"en": 1.0}}, "cpt": {"init": "base", "targets": ["de"], "steps": 4}}
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    assert main(["run", str(path), "-q"]) == 0
    return tmp / "run"


@pytest.mark.parametrize(("case", "setup", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case: str, setup: Setup, fragment: str, finished_run: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr("occiforge.languages._TABLE", dict(__import__("occiforge.languages").languages._TABLE))
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = _digests(run)
    args = _fill(setup(tmp_path, run), tmp_path)
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own exit (our parser makes it one line)
        code = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (case, code, err[-2000:])
    assert "Traceback" not in err, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("occiforge: error: "), (case, err[-2000:])
    assert fragment.replace("{tmp}", str(tmp_path)) in lines[0], (case, lines[0])
    after = _digests(run)
    assert after == before, f"{case}: earlier artifacts changed: {sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))[:5]}"


def test_catalogue_is_documented():
    doc = (REPO / "docs" / "errors.md").read_text(encoding="utf-8")
    missing = [case for case, _, _ in CASES if f"`{case}`" not in doc]
    assert not missing, f"docs/errors.md lacks {missing}"
    assert len(CASES) >= 60


def test_damaged_manifests_are_redone_not_tracebacks(finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A manifest that is not UTF-8, or valid JSON of the wrong shape, marks its stage unfinished."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "tokens" / "manifest.json").write_bytes(b"\xff\xfe not utf-8")
    (run / "eval" / "manifest.json").write_text(json.dumps(["a", "list"]))
    recipe = tmp_path / "r.yaml"
    tree = tiny_tree(run)
    tree["models"] = {"base": {"mixture": {"en": 1.0}}, "cpt": {"init": "base", "targets": ["de"], "steps": 4}}
    recipe.write_text(yaml.safe_dump(tree, sort_keys=False))
    assert main(["run", str(recipe), "-q"]) == 0, capsys.readouterr().err
    assert json.loads((run / "tokens" / "manifest.json").read_text())["stage"] == "tokens"
    assert json.loads((run / "eval" / "manifest.json").read_text())["stage"] == "eval"
