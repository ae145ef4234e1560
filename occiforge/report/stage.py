"""The report stage: `report/index.html` with data, tokenizer and evaluation tables and plots."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from occiforge import artifacts
from occiforge.report.html import table_html
from occiforge.report.plots import grouped_bars, loss_curves
from occiforge.tokenizer.report import report_section


def fingerprint(ctx: Any) -> str:
    return artifacts.fingerprint("report/1", ctx.recipe.report.model_dump(mode="json"), ctx.fingerprint("eval"))


CSS = "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}"


def _leaderboard_section(ctx: Any, out: Path) -> list[str]:
    """Multiple-choice leaderboard (eval/leaderboard.json): per-language averages, plot, per-task tables."""
    path = ctx.stage_dir("eval") / "leaderboard.json"
    if not path.is_file():
        return []
    board = json.loads(path.read_text())
    langs = board["languages"]
    rows = {m: {**avg, "avg": board["overall"].get(m)} for m, avg in board["average"].items()}
    grouped_bars(board["average"], langs, "mean score over tasks (higher is better)", out / "leaderboard.png")
    parts = ["<h2>Leaderboard: multiple choice, mean over tasks per language</h2>",
             table_html(rows, [*langs, "avg"], lower_is_better=False),
             '<img src="leaderboard.png" alt="mean multiple-choice score per language and model">']
    for task in board["tasks"]:
        per_task = {m: s.get(task, {}) for m, s in board["scores"].items()}
        cols = [lang for lang in langs if any(lang in r for r in per_task.values())]
        parts += [f"<h3>{html.escape(task)} ({html.escape(board['metric'][task])})</h3>", table_html(per_task, cols, lower_is_better=False)]
    return parts


def _sections(ctx: Any, out: Path) -> list[str]:
    langs = ctx.recipe.languages
    stats = json.loads((ctx.stage_dir("data") / "stats.json").read_text())
    data_rows = {lang: {"read": s["read"], "kept": s["kept"], "heldout": s.get("heldout_docs", 0),
                        "dropped": ", ".join(f"{k} {v}" for k, v in s["dropped"].items()) or "-"} for lang, s in stats.items()}
    results = json.loads((ctx.stage_dir("eval") / "results.json").read_text())
    bpb, eval_langs = results["bpb"], results["languages"]
    grouped_bars(bpb, eval_langs, "bits per byte (lower is better)", out / "bpb.png")
    hist = {}
    for name in bpb:
        log = ctx.stage_dir("train") / name / "train_log.json"
        if log.is_file():
            hist[name] = json.loads(log.read_text())
    if hist:
        loss_curves(hist, out / "loss.png")
    return [
        "<h2>Evaluation: bits per byte on held-out text</h2>",
        table_html(bpb, eval_langs, lower_is_better=True),
        '<img src="bpb.png" alt="bits per byte per language and model">',
        *_leaderboard_section(ctx, out),
        *(['<h2>Training loss</h2><img src="loss.png" alt="training loss">'] if hist else []),
        report_section(ctx.stage_dir("tokenizer")),
        "<h2>Data</h2>", table_html(data_rows, ["read", "kept", "heldout", "dropped"]),
        f"<p>Languages: {', '.join(langs)}. Recipe: <code>recipe.resolved.yaml</code>.</p>",
    ]


def run(ctx: Any, fp: str) -> dict[str, Any]:
    ctx.upstream("eval")
    title = html.escape(ctx.recipe.report.title or f"occiforge run: {ctx.recipe.name}")
    with artifacts.staged_dir(ctx.stage_dir("report")) as tmp:
        body = "\n".join(_sections(ctx, tmp))
        page = f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{CSS}</style></head><body><h1>{title}</h1>\n{body}\n</body></html>\n"
        (tmp / "index.html").write_text(page, encoding="utf-8")
    ctx.log(f"  report: {ctx.stage_dir('report') / 'index.html'}")
    return {"index": "index.html"}
