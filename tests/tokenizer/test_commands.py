"""`occiforge tokenizer report`: the JSON schema, charts, and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from occiforge.cli import main
from tests.tokenizer.conftest import demo_texts, write_parallel


@pytest.fixture
def parallel(tmp_path: Path) -> Path:
    docs = {lang: [d.replace("\n", " ") for d in demo_texts(lang)[:6]] for lang in ("en", "de", "el")}
    return write_parallel(tmp_path / "par", docs)


@pytest.fixture
def tok_file(tmp_path: Path, small_bpe) -> Path:
    path = tmp_path / "small" / "tokenizer.json"
    path.parent.mkdir()
    small_bpe.save(str(path))
    return path


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("occiforge: error: ") and "Traceback" not in err
    return err


def test_report_schema_and_charts(tmp_path: Path, parallel: Path, tok_file: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "out" / "report.json"
    argv = ["tokenizer", "report", "--tokenizer", "tiktoken:cl100k_base", "--tokenizer", str(tok_file.parent),
            "--tokenizer", f"again={tok_file}", "--parallel", str(parallel), "--mono", str(parallel), "--output", str(out)]
    assert main(argv) == 0
    assert "fertility / parity" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert list(report["tokenizers"]) == ["cl100k_base", "small", "again"]
    for rows in report["tokenizers"].values():
        assert sorted(rows) == ["de", "el", "en"]
        for row in rows.values():
            assert set(row) == {"tokens", "bytes_per_token", "fertility", "continued_words", "parity"}
            assert isinstance(row["tokens"], int) and all(isinstance(row[k], float) for k in row if k != "tokens")
        assert rows["en"]["parity"] == 1.0
    assert report["tokenizers"]["small"] == report["tokenizers"]["again"]
    assert report["tokenizers"]["cl100k_base"]["el"]["parity"] > 2 * report["tokenizers"]["small"]["el"]["parity"]
    assert "parity" not in report["mono"]["small"]["de"]
    for metric in ("tokens", "bytes_per_token", "fertility", "continued_words", "parity"):
        assert (out.parent / f"report.{metric}.png").stat().st_size > 1000


def test_report_languages_subset(tmp_path: Path, parallel: Path, tok_file: Path):
    out = tmp_path / "r.json"
    assert main(["tokenizer", "report", "--tokenizer", str(tok_file), "--parallel", str(parallel),
                 "--languages", "el", "--output", str(out), "-q"]) == 0
    assert sorted(json.loads(out.read_text())["tokenizers"]["small"]) == ["el", "en"]


def test_report_errors(tmp_path: Path, parallel: Path, tok_file: Path, capsys: pytest.CaptureFixture[str]):
    base = ["tokenizer", "report", "--output", str(tmp_path / "r.json")]
    (parallel / "de.txt").write_text("one line only\n")
    err = _fails(capsys, [*base, "--tokenizer", str(tok_file), "--parallel", str(parallel)])
    assert "de.txt: 1 lines but en.txt has 6" in err
    no_en = write_parallel(tmp_path / "no_en", {"de": ["a"], "fr": ["b"]})
    assert "en.txt: missing" in _fails(capsys, [*base, "--tokenizer", str(tok_file), "--parallel", str(no_en)])
    (parallel / "de.txt").unlink()
    broken = tmp_path / "broken.json"
    broken.write_text('{"model": 42}')
    assert "cannot load" in _fails(capsys, [*base, "--tokenizer", str(broken), "--parallel", str(parallel)])
    assert "unknown language code 'xx'" in _fails(capsys, [*base, "--tokenizer", str(tok_file), "--parallel", str(parallel), "--languages", "xx"])
    assert not (tmp_path / "r.json").exists()


def test_without_action_the_stage_still_needs_a_recipe(capsys: pytest.CaptureFixture[str]):
    assert "give a recipe with -c RECIPE" in _fails(capsys, ["tokenizer"])


def test_recipe_stage_still_runs_without_an_action(tiny_recipe: Path):
    assert main(["data", "-c", str(tiny_recipe), "-q"]) == 0
    assert main(["tokenizer", "-c", str(tiny_recipe), "-q"]) == 0
    report = json.loads((tiny_recipe.parent / "run" / "tokenizer" / "report.json").read_text())
    assert set(report) == {"en", "de"} and report["de"]["fertility"] > report["de"]["continued_words"]
