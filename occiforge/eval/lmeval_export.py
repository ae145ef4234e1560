"""Write lm-evaluation-harness task YAMLs that pose exactly the prompts occiforge scored.

One task per task and language, named `<task>_<lang>`: `<task>_<lang>.jsonl` holds each item's
full prompt (few-shot examples included, so lm-eval runs it 0-shot), its choices and answer;
`<task>_<lang>.yaml` reads it with lm-eval's `json` loader. Cross-check with
`lm_eval --model hf --model_args pretrained=MODEL --include_path DIR --tasks <task>_<lang>`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import yaml

from occiforge import artifacts
from occiforge.eval.tasks import TARGET_DELIMITER, Posed


def task_yaml(name: str, data_file: Path, version: int) -> dict[str, object]:
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file.resolve())}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "prompt",  # field names: lm-eval reads them from the record, no template
        "doc_to_choice": "choices",
        "doc_to_target": "answer",
        "target_delimiter": TARGET_DELIMITER,
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")],
        "metadata": {"version": version},
    }


def export_task(folder: Path, task: str, lang: str, posed: Sequence[Posed], version: int) -> Path:
    """Write `<task>_<lang>.{jsonl,yaml}` into `folder`; returns the YAML's path."""
    name = f"{task}_{lang}"
    data = folder / f"{name}.jsonl"
    lines = [json.dumps({"id": p.item.id, "prompt": p.context, "choices": list(p.choices), "answer": p.item.answer},
                        ensure_ascii=False) for p in posed]
    artifacts.write_text_atomic(data, "\n".join(lines) + "\n")
    path = folder / f"{name}.yaml"
    artifacts.write_text_atomic(path, yaml.safe_dump(task_yaml(name, data, version), sort_keys=False, allow_unicode=True))
    return path
