"""The report's evaluation section, read from `eval/results.json` and `eval/leaderboard.json`.

Bits per byte is shown as each model's change against its base model (the model it started
from, where that was scored too), per language. Multiple choice shows each task's headline
metric with its item count, chance level and 95% interval (value ± 1.96 × lm-eval's stderr,
which eval writes as `<metric>_stderr`). The last table names the best model per language, and
says when the runner-up is within the interval rather than pretending a winner.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from occiforge.context import Context, ModelRecord
from occiforge.report import plots
from occiforge.report.collect import lang_name, read_json
from occiforge.report.tables import (
    Z95,
    Cell,
    Row,
    Table,
    by_language,
    interval,
    num,
    pct,
    signed,
)


def base_models(ctx: Context, models: Mapping[str, ModelRecord], scored: set[str]) -> dict[str, str]:
    """model -> the scored model it started from (a registry model, or an eval.extra_models entry by path)."""
    by_path = {path: name for name, path in ctx.recipe.eval.extra_models.items()}
    out = {}
    for name, rec in models.items():
        init = rec.init or ""
        base = init if init in scored else by_path.get(init)
        if base and base != name and base in scored:
            out[name] = base
    return out


def bpb_section(results: dict[str, Any], bases: Mapping[str, str]) -> dict[str, Any] | None:
    bpb: dict[str, dict[str, float]] = results.get("bpb") or {}
    if not any(bpb.values()):
        return None
    names = list(bpb)
    langs = [lang for lang in results.get("languages", []) if any(lang in row for row in bpb.values())]

    def cell(lang: str, name: str) -> Cell | None:
        v = bpb[name].get(lang)
        if v is None:
            return None
        c = Cell(num(v), title=f"{v!r} bits per byte")
        base = bases.get(name)
        if base is not None and (b := bpb[base].get(lang)) is not None:
            c.sub, c.sub_cls = f"{signed(v - b)} vs {base}", "better" if v < b else "worse"
        return c

    rows = by_language(langs, names, cell, lower_is_better=True, best_of=lambda lang, n: bpb[n].get(lang), lang_note=lang_name)
    delta = {f"{n} − {bases[n]}": {lang: bpb[n][lang] - bpb[bases[n]][lang] for lang in langs
                                   if lang in bpb[n] and lang in bpb[bases[n]]} for n in names if n in bases}
    chart = plots.bars(delta, langs, "Δ bits per byte vs base (lower is better)") if delta else \
        plots.bars(bpb, langs, "bits per byte (lower is better)")
    return {"table": Table(names, rows, corner="language"), "chart": chart, "has_delta": bool(delta)}


def headline(metric_of: Mapping[str, str], task: str, row: Mapping[str, Any]) -> tuple[str, float, float | None]:
    """(metric, value, stderr) a task shows: the leaderboard's metric for it, else acc."""
    metric = metric_of.get(task, "acc")
    if metric not in row:
        metric = "acc"
    return metric, float(row[metric]), row.get(f"{metric}_stderr")


def mc_tasks(results: dict[str, Any], metric_of: Mapping[str, str]) -> list[dict[str, Any]]:
    """One table and chart per task: languages down, n and chance, then each model's score ± 95%."""
    mc: dict[str, dict[str, dict[str, Any]]] = results.get("mc") or {}
    names = list(mc)
    out = []
    for task in sorted({t for per_model in mc.values() for t in per_model}):
        per = {n: mc[n].get(task, {}) for n in names}
        found = {lang for rows in per.values() for lang in rows}
        langs = [lang for lang in results.get("languages", []) if lang in found] + sorted(found - set(results.get("languages", [])))
        metric = next((headline(metric_of, task, r[lang])[0] for r in per.values() for lang in r), "acc")
        first = {lang: next(r[lang] for r in per.values() if lang in r) for lang in langs}

        def cell(lang: str, name: str, per: dict[str, Any] = per, task: str = task, metric: str = metric) -> Cell | None:
            if lang not in per[name]:
                return None
            _, v, se = headline(metric_of, task, per[name][lang])
            return Cell(interval(v, se), title=f"{metric} {v!r}, stderr {se!r}, n {per[name][lang].get('n')}")

        rows = by_language(langs, names, cell, lower_is_better=False, lang_note=lang_name,
                           best_of=lambda lang, n, per=per, task=task: headline(metric_of, task, per[n][lang])[1] if lang in per[n] else None)
        for row in rows:
            f = first[row.label]
            row.cells[:0] = [Cell(num(f.get("n"))), Cell(pct(f.get("chance")) if "chance" in f else "–", "muted")]
        values = {n: {lang: headline(metric_of, task, per[n][lang])[1] for lang in per[n]} for n in names}
        errors = {n: {lang: Z95 * (headline(metric_of, task, per[n][lang])[2] or 0.0) for lang in per[n]} for n in names}
        chance = {lang: f["chance"] for lang, f in first.items() if "chance" in f}
        out.append({"task": task, "metric": metric, "table": Table(["n", "chance", *names], rows, corner="language"),
                    "chart": plots.bars(values, langs, f"{metric} (95% interval)", errors, chance, "chance")})
    return out


def _mc_average(mc: Mapping[str, Any], metric_of: Mapping[str, str], name: str, lang: str) -> tuple[float, float | None] | None:
    """Mean over the tasks a language has, with the stderr of that mean (tasks independent)."""
    rows = [headline(metric_of, t, per[lang]) for t, per in mc.get(name, {}).items() if lang in per]
    if not rows:
        return None
    ses = [se for _, _, se in rows]
    se = None if any(s is None for s in ses) else math.sqrt(sum(s * s for s in ses)) / len(rows)  # type: ignore[operator]
    return sum(v for _, v, _ in rows) / len(rows), se


def best_section(results: dict[str, Any], metric_of: Mapping[str, str], bases: Mapping[str, str]) -> dict[str, Any] | None:
    """Per language: the lowest bits per byte and the best multiple-choice mean, each with a short caption."""
    bpb, mc = results.get("bpb") or {}, results.get("mc") or {}
    langs = [lang for lang in results.get("languages", []) if any(lang in r for r in bpb.values())]
    langs += sorted({lang for per in mc.values() for rows in per.values() for lang in rows} - set(langs))
    head = [h for h, have in (("lowest bits per byte", bool(bpb)), ("best multiple choice", bool(mc))) if have]
    if not head or len(bpb or mc) < 2:
        return None
    table, wins = Table(head, corner="language"), {}
    for lang in langs:
        cells = []
        if bpb:
            cells.append(_best_bpb(bpb, bases, lang))
            wins.setdefault(cells[-1].title, []).append(lang)
        if mc:
            cells.append(_best_mc(mc, metric_of, lang))
        table.rows.append(Row(lang, cells, lang_name(lang)))
    summary = "; ".join(f"{m} in {len(ls)} of {len(langs)} languages" for m, ls in sorted(wins.items(), key=lambda kv: -len(kv[1])) if m)
    return {"table": table, "summary": summary}


def _best_bpb(bpb: Mapping[str, Mapping[str, float]], bases: Mapping[str, str], lang: str) -> Cell:
    ranked = sorted((row[lang], n) for n, row in bpb.items() if lang in row)
    if not ranked:
        return Cell("–", "muted")
    (v, name), rest = ranked[0], ranked[1:]
    text = f"{name} {num(v)}"
    if (base := bases.get(name)) and lang in bpb[base]:
        text += f", {signed(v - bpb[base][lang])} vs {base}"
    sub = f"{num(rest[0][0] - v)} below {rest[0][1]}" if rest else ""
    return Cell(text, title=name, sub=sub)


def _best_mc(mc: Mapping[str, Any], metric_of: Mapping[str, str], lang: str) -> Cell:
    avg = {n: a for n in mc if (a := _mc_average(mc, metric_of, n, lang)) is not None}
    if not avg:
        return Cell("–", "muted")
    ranked = sorted(avg, key=lambda n: -avg[n][0])
    name, (v, se) = ranked[0], avg[ranked[0]]
    cell = Cell(f"{name} {interval(v, se)}", title=name)
    if len(ranked) > 1:
        second, (v2, se2) = ranked[1], avg[ranked[1]]
        # the gap is within the 95% interval of the difference: no separable winner
        tied = se is None or se2 is None or v - v2 <= Z95 * math.hypot(se, se2)
        cell.sub = f"not separable from {second} at 95%" if tied else f"ahead of {second} at 95%"
        cell.sub_cls = "muted" if tied else "better"
    return cell


def eval_section(ctx: Context, models: Mapping[str, ModelRecord]) -> dict[str, Any] | None:
    results = read_json(ctx.stage_dir("eval") / "results.json")
    if not results:
        return None
    board = read_json(ctx.stage_dir("eval") / "leaderboard.json") or {}
    metric_of = board.get("metric", {})
    scored = set(results.get("bpb") or {}) | set(results.get("mc") or {})
    bases = base_models(ctx, models, scored)
    return {"bpb": bpb_section(results, bases), "mc": mc_tasks(results, metric_of),
            "best": best_section(results, metric_of, bases), "bases": bases}
