"""`occiforge eval --model ...`: the one-shot CLI, its output schema, its errors, torchrun, leaderboards."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from occiforge.cli import main
from tests.conftest import torchrun

from .conftest import REPO
from .test_tasks import qa_items, write_jsonl


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bpb")
    docs = [{"text": t, "lang": lang} for lang, t in [("en", "The cat sat on the mat. " * 3), ("de", "Die Katze saß auf der Matte."),
                                                      ("en", "Rain fell all night."), ("de", "Es regnete die ganze Nacht.")]]
    return write_jsonl(folder / "held.jsonl", docs)


def run_eval(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "results.json"
    assert main(["eval", *args, "--output", str(out)]) == 0
    return json.loads(out.read_text())


def test_one_shot_eval_writes_the_documented_schema(tiny_model, texts, tmp_path, shared_data):
    res = run_eval(tmp_path, "--model", str(tiny_model), "--bpb", str(texts), "--mc", "builtin:demo_qa",
                   str(shared_data / "mc" / "xcopa"), "--max-items", "10")
    assert res["model"] == str(tiny_model)
    assert set(res["bpb"]) == {"en", "de"} and all(isinstance(v, float) and 0 < v < 20 for v in res["bpb"].values())
    assert set(res["mc"]) == {"demo_qa", "xcopa"}
    assert set(res["mc"]["demo_qa"]) == {"en", "de", "fr", "es", "it"} and set(res["mc"]["xcopa"]) == {"et", "it"}
    for per_lang in res["mc"].values():
        for row in per_lang.values():
            assert row["n"] == 10 and 0 <= row["acc"] <= 1 and 0 <= row["acc_norm"] <= 1
            assert row["truncated"] == 0 and row["fewshot"] == 0 and row["version"] == 1


def test_bpb_is_byte_normalised(tiny_model, texts, tmp_path):
    """Same text, the same bpb whatever else is in the file; bytes, not tokens, in the denominator."""
    from occiforge.eval.suite import load, score_bpb

    model, tok = load(str(tiny_model), "cpu")
    one = score_bpb(model, tok, {"en": ["The cat sat on the mat."]}, 64)["en"]
    ids = tok("The cat sat on the mat.", add_special_tokens=False)["input_ids"]
    assert one["bytes"] == len(b"The cat sat on the mat.") and one["tokens"] == len(ids)
    res = run_eval(tmp_path, "--model", str(tiny_model), "--bpb", str(texts))
    assert math.isfinite(res["bpb"]["en"]) and res["mc"] == {}


@pytest.mark.parametrize(("record", "message"), [
    ({"question": "q", "choices": ["a", "b"], "answer": 5}, "answer index 5 is out of range"),
    ({"question": "q", "choices": [], "answer": 0}, "'choices' are empty"),
    ({"question": "q", "choices": ["a"], "answer": 0, "lang": "it"}, "lang 'it' in a file for 'de'"),
])
def test_bad_items_exit_2_with_one_line_naming_file_and_line(tiny_model, tmp_path, capsys, record, message):
    path = write_jsonl(tmp_path / "quiz" / "de.jsonl", [qa_items("de", 1)[0], qa_items("de", 2)[1], record])
    assert main(["eval", "--model", str(tiny_model), "--mc", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"occiforge: error: {path}:3: ") and message in err and "\n" not in err


def test_a_folder_that_is_not_a_causal_lm_is_a_one_line_error(tmp_path, capsys):
    path = write_jsonl(tmp_path / "quiz" / "en.jsonl", qa_items("en", 2))
    not_lm = tmp_path / "not-a-model"
    not_lm.mkdir()
    (not_lm / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 10}))
    for model in (str(not_lm), str(tmp_path / "missing" / "model")):
        assert main(["eval", "--model", model, "--mc", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("occiforge: error:") and model in err and "\n" not in err
    assert main(["eval", "--mc", str(path)]) == 2
    assert "--model" in capsys.readouterr().err


def test_export_and_samples_pose_exactly_what_was_scored(tiny_model, tmp_path):
    import yaml

    export, samples = tmp_path / "lm", tmp_path / "samples.jsonl"
    res = run_eval(tmp_path, "--model", str(tiny_model), "--mc", "builtin:demo_qa", "--fewshot", "2", "--max-items", "4",
                   "--prompt-language", "native", "--export-lm-eval", str(export), "--log-samples", str(samples))
    cfg = yaml.safe_load((export / "demo_qa_de.yaml").read_text())
    assert cfg["task"] == "demo_qa_de" and cfg["dataset_path"] == "json" and cfg["output_type"] == "multiple_choice"
    docs = [json.loads(line) for line in Path(cfg["dataset_kwargs"]["data_files"]["test"]).read_text().splitlines()]
    assert len(docs) == 4 and docs[0]["prompt"].count("\n\nFrage: ") == 2 and docs[0]["prompt"].endswith("\nAntwort:")
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(rows) == 20 and {r["task"] for r in rows} == {"demo_qa"}
    de = [r for r in rows if r["lang"] == "de"]
    assert sum(r["acc"] for r in de) / 4 == res["mc"]["demo_qa"]["de"]["acc"]


def test_leaderboard_joins_results_files(tmp_path):
    for name, acc in (("a", 0.5), ("b", 0.75)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"model": name, "mc": {
            "demo_qa": {"en": {"acc": acc, "acc_norm": acc, "n": 4}, "de": {"acc": 0.25, "acc_norm": 0.25, "n": 4}}}}))
    out = tmp_path / "board.md"
    assert main(["eval", "--leaderboard", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--output", str(out)]) == 0
    text = out.read_text()
    assert "| b | 25.0 | 75.0 | 50.0 |" in text and "| a | 25.0 | 50.0 | 37.5 |" in text


def test_torchrun_splits_the_work_and_gets_the_same_scores(tiny_model, texts, tmp_path):
    """Two CPU ranks (gloo) score half the items each; the gathered results equal one process's."""
    args = ["--model", str(tiny_model), "--bpb", str(texts), "--mc", "builtin:demo_qa", "--max-items", "8", "--fewshot", "1"]
    single = run_eval(tmp_path, *args)
    out = tmp_path / "ranks.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(torchrun(tmp_path, "-m", "occiforge.cli", "eval", *args, "--output", str(out)),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    # a rank that aborts says why far above torchrun's summary: keep those lines in the message
    why = [x for x in proc.stderr.splitlines() if any(k in x for k in ("terminate called", "what()", "Error", "error:"))]
    assert proc.returncode == 0, "\n".join(why[:20]) + "\n...\n" + proc.stderr[-1500:]
    ranks = json.loads(out.read_text())
    assert ranks["config"]["world_size"] == 2 and single["config"]["world_size"] == 1
    assert ranks["mc"] == single["mc"]
    assert ranks["bpb"] == pytest.approx(single["bpb"], abs=1e-5)
