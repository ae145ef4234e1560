"""Leaderboard: models x languages x tasks, with Occiglot-style per-language averages.

Each task contributes its headline metric (the template's: acc_norm for ARC and HellaSwag, mc2
for TruthfulQA, acc otherwise); a model's score in a language is the mean over the tasks that
language has, and its overall score the mean over languages. Averages compare fairly only
between models scored on the same tasks, which the leaderboard shows next to them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from occiforge import artifacts
from occiforge.errors import UserError
from occiforge.eval.tasks import template_for


def headline(task: str, row: Mapping[str, Any]) -> tuple[str, float]:
    """(metric name, value) the leaderboard shows for one task in one language."""
    metric = template_for(task).metric
    if metric not in row:
        metric = "acc"
    return metric, float(row[metric])


def build(mc: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]]) -> dict[str, Any]:
    """From {model: {task: {lang: {acc, acc_norm, ...}}}} to the leaderboard's JSON form."""
    tasks = sorted({t for per_model in mc.values() for t in per_model})
    langs = sorted({lang for per_model in mc.values() for per_task in per_model.values() for lang in per_task})
    metric: dict[str, str] = {}
    scores: dict[str, dict[str, dict[str, float]]] = {}
    average: dict[str, dict[str, float]] = {}
    for model, per_task in mc.items():
        scores[model] = {}
        for task, per_lang in per_task.items():
            for lang, row in per_lang.items():
                metric[task], value = headline(task, row)
                scores[model].setdefault(task, {})[lang] = value
        average[model] = {}
        for lang in langs:
            vals = [scores[model][t][lang] for t in tasks if lang in scores[model].get(t, {})]
            if vals:
                average[model][lang] = sum(vals) / len(vals)
    overall = {m: sum(a.values()) / len(a) for m, a in average.items() if a}
    return {"tasks": tasks, "languages": langs, "metric": metric, "scores": scores, "average": average, "overall": overall}


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _table(rows: Mapping[str, Mapping[str, float]], cols: list[str], extra: Mapping[str, float] | None = None) -> list[str]:
    head = ["model", *cols, *(["avg"] if extra is not None else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        cells = [_fmt(row.get(c)) for c in cols] + ([_fmt(extra.get(name))] if extra is not None else [])
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def to_markdown(board: Mapping[str, Any]) -> str:
    """Per-language averages first, then one table per task (scores in percent)."""
    langs, out = board["languages"], ["## Leaderboard: average over tasks per language (%)", ""]
    out += _table(board["average"], langs, board["overall"])
    out += ["", "Tasks (metric): " + ", ".join(f"{t} ({board['metric'][t]})" for t in board["tasks"]), ""]
    for task in board["tasks"]:
        rows = {m: s.get(task, {}) for m, s in board["scores"].items()}
        out += [f"### {task} ({board['metric'][task]}, %)", "", *_table(rows, [lang for lang in langs if any(lang in r for r in rows.values())]), ""]
    return "\n".join(out) + "\n"


def write(board: Mapping[str, Any], folder: Path, stem: str = "leaderboard") -> None:
    artifacts.write_json_atomic(folder / f"{stem}.json", board)
    artifacts.write_text_atomic(folder / f"{stem}.md", to_markdown(board))


def from_result_files(paths: list[Path]) -> dict[str, Any]:
    """A leaderboard of one-shot results files (`occiforge eval --model ... --output`)."""
    mc: dict[str, Any] = {}
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"{path}: not a readable results file ({e.__class__.__name__})") from None
        if not isinstance(data, dict) or not isinstance(data.get("mc"), dict):
            raise UserError(f"{path}: no 'mc' table (write it with occiforge eval --model ... --mc ... --output)")
        name = str(data.get("name") or data.get("model") or path.stem)
        mc[name if name not in mc else f"{name} ({path})"] = data["mc"]
    return build(mc)
