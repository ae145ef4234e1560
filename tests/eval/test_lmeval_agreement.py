"""occiforge's scores against lm-evaluation-harness itself (the reference), on the same model and items.

`occiforge eval --export-lm-eval` writes task YAMLs posing exactly the prompts it scored; lm-eval's
`hf` backend runs them through its Python API (local model folder, local JSON data, offline).
Per-item log-likelihoods must agree to 1e-4, acc and acc_norm exactly, 0-shot and 5-shot (the
tiny model's context of 280 tokens cuts some 5-shot prompts from the left, in both).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from occiforge.cli import main

from .conftest import build_tiny_model

lm_eval = pytest.importorskip("lm_eval")


@pytest.fixture(scope="module")
def model_280(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("lm280"), max_positions=280)


def run_lm_eval(model: Path, include: Path, tasks: list[str], monkeypatch: pytest.MonkeyPatch) -> dict:
    import huggingface_hub.constants
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return simple_evaluate(model="hf", model_args={"pretrained": str(model), "dtype": "float32"}, tasks=tasks,
                           task_manager=TaskManager(include_path=str(include), include_defaults=False),
                           batch_size=16, device="cpu", log_samples=True, verbosity="ERROR")


def compare(ours: dict, samples_file: Path, theirs: dict) -> float:
    """Largest |ll difference| over every item and choice; asserts identical accuracies."""
    mine = [json.loads(line) for line in samples_file.read_text().splitlines()]
    worst = 0.0
    for task, per_lang in ours["mc"].items():
        for lang, row in per_lang.items():
            name = f"{task}_{lang}"
            ref = sorted(theirs["samples"][name], key=lambda s: s["doc_id"])
            got = [s for s in mine if s["task"] == task and s["lang"] == lang]
            assert len(ref) == len(got) == row["n"]
            for r, g in zip(ref, got, strict=True):
                lls = [resp[0] for resp in r["filtered_resps"]]
                worst = max(worst, *(abs(a - b) for a, b in zip(lls, g["loglikelihoods"], strict=True)))
            res = theirs["results"][name]
            assert (row["acc"], row["acc_norm"]) == (res["acc,none"], res["acc_norm,none"]), name
            for metric in ("acc", "acc_norm"):  # the intervals the report and model cards show
                assert row[f"{metric}_stderr"] == pytest.approx(res[f"{metric}_stderr,none"], abs=1e-12), name
    return worst


@pytest.mark.parametrize("shots", [0, 5])
def test_scores_agree_with_lm_eval(shots, model_280, tmp_path, monkeypatch, request):
    export, out, samples = tmp_path / "lmeval", tmp_path / "ours.json", tmp_path / "samples.jsonl"
    sources = ["builtin:demo_qa"]
    if shots == 0:  # the shared tasks' templates too: 7 topic labels, xcopa's connectors and case
        shared = request.getfixturevalue("shared_data")
        sources += [str(shared / "mc" / "sib200" / "el.jsonl"), str(shared / "mc" / "xcopa")]
    args = ["eval", "--model", str(model_280), "--fewshot", str(shots), "--max-items", "20", "--output", str(out),
            "--export-lm-eval", str(export), "--log-samples", str(samples)]
    assert main(args + [a for s in sources for a in ("--mc", s)]) == 0
    ours = json.loads(out.read_text())
    names = sorted(p.stem for p in export.glob("*.yaml"))
    assert len(names) == sum(len(v) for v in ours["mc"].values())
    if shots:
        assert 0 < sum(r["truncated"] for r in ours["mc"]["demo_qa"].values()) < 100  # both paths exercised
    theirs = run_lm_eval(model_280, export, names, monkeypatch)
    worst = compare(ours, samples, theirs)
    assert worst < 1e-4, worst
    print(f"{shots}-shot: {len(names)} tasks, max |ll diff| {worst:.2e}")  # noqa: T201
