"""User errors: one line on stderr, exit code 2, nothing started."""

from pathlib import Path

import pytest
import yaml

from occiforge.cli import main
from occiforge.registry import stages
from tests.conftest import tiny_tree


def _fails(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("occiforge: error: "), err
    assert "Traceback" not in err
    return err


def _write(tmp_path: Path, tree: dict) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return str(path)


def test_missing_recipe(capsys, tmp_path):
    assert "recipe file not found" in _fails(capsys, ["run", str(tmp_path / "nope.yaml")])


def test_unknown_language_code(capsys, tmp_path):
    err = _fails(capsys, ["run", _write(tmp_path, tiny_tree(tmp_path / "run", langs=("en", "zz")))])
    assert "languages: unknown language code 'zz'" in err
    assert not (tmp_path / "run").exists()


def test_missing_source_folder_fails_before_work(capsys, tmp_path):
    tree = tiny_tree(tmp_path / "run")
    tree["data"]["sources"] = [{"name": "mine", "path": str(tmp_path / "corpus")}]
    assert "folder not found" in _fails(capsys, ["run", _write(tmp_path, tree)])
    assert not (tmp_path / "run").exists()


def test_missing_language_file(capsys, tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "en.jsonl").write_text('{"text": "hello", "lang": "en"}\n')
    tree = tiny_tree(tmp_path / "run")
    tree["data"]["sources"] = [{"name": "mine", "path": str(tmp_path / "corpus")}]
    assert "no de.jsonl in" in _fails(capsys, ["data", "-c", _write(tmp_path, tree)])


def test_empty_corpus_after_filtering(capsys, tmp_path):
    err = _fails(capsys, ["data", "-c", _write(tmp_path, tiny_tree(tmp_path / "run")), "--set", "data.filters.min_chars=100000", "-q"])
    assert "no documents left for en, de after filtering" in err
    assert not (tmp_path / "run" / "data" / "manifest.json").exists()


def test_stage_before_its_input(capsys, tmp_path):
    assert "run `occiforge tokenizer` first" in _fails(capsys, ["train", "-q", "-c", _write(tmp_path, tiny_tree(tmp_path / "run"))])


def test_bad_override(capsys, tmp_path):
    assert "train.steps: Input should be a valid integer" in _fails(
        capsys, ["validate", _write(tmp_path, tiny_tree(tmp_path)), "--set", "train.steps=many"])


@pytest.mark.parametrize("command", ["run", "validate", "languages", *stages()])
def test_help_everywhere(capsys, command):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0 and "usage: occiforge" in capsys.readouterr().out


def test_languages_lists_the_table(capsys):
    assert main(["languages"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 24 and lines[0].startswith("bg\tbul_Cyrl\tBulgarian")


def test_validate_prints_resolved_recipe(capsys, tiny_recipe):
    assert main(["validate", str(tiny_recipe), "--set", "train.steps=3"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["train"]["steps"] == 3 and resolved["tokenizer"]["kind"] == "bpe"


def test_a_reader_that_leaves_early_is_no_traceback():
    """`occiforge languages | head -1`: the pipe closes before occiforge writes; exit 141 (SIGPIPE's), stderr empty."""
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.Popen([sys.executable, "-m", "occiforge.cli", "languages"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err[-2000:]


@pytest.mark.parametrize("argv, said", [
    (["run", "x.yaml", "--bogus"], "occiforge: error: run: unrecognized arguments: --bogus (see occiforge run --help)"),
    (["--bogus", "run", "x.yaml"], "occiforge: error: unrecognized arguments: --bogus (see occiforge --help)"),
    (["run", "x.yaml", "run"], "occiforge: error: run: unrecognized arguments: run (see occiforge run --help)"),
    (["frobnicate"], "occiforge: error: argument COMMAND: invalid choice: 'frobnicate'")])
def test_a_usage_error_is_said_once_by_the_command_it_was_given_to(argv: list[str], said: str, capsys):
    """It said 'occiforge: error: occiforge: ...' and sent every unknown flag to the top-level help."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and capsys.readouterr().err.startswith(said)
