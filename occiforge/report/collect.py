"""What the report shows about the run, data and training, read from artifacts only.

Sources: `data/stats.json` (kept and dropped documents per language and reason), the tokens
stage's manifest (training tokens per language), the model registry (`ctx.models()`: how each
model was made) and each model's folder (`manifest.json`, `train_log.json`). A figure that no
artifact records is left out, never filled with a default.

`train_log.json` is a list of logged steps: `step`, `loss`, `lr`, and, where the train stage
records them, `loss_<lang>` (training loss per language), `val_loss` (held-out loss per language)
and `tokens_per_s`; the charts for those appear only when the log has them. An instruct model's `samples.json` (one answer per language to
a held-out prompt, beside the reference) becomes the instruct samples section.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from occiforge import artifacts
from occiforge.context import Context, ModelRecord
from occiforge.languages import get as get_language
from occiforge.languages import is_known
from occiforge.report import plots
from occiforge.report.tables import (
    Cell,
    Row,
    Table,
    drop_empty_columns,
    mixture_text,
    num,
)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def lang_name(code: str) -> str:
    return get_language(code).name if is_known(code) else ""


def made_how(rec: ModelRecord) -> str:
    """One sentence on how a model was made, from its registry entry."""
    steps = f"{rec.steps:,} steps" if rec.steps else ""
    tokens = f"{rec.tokens_seen:,} positions" if rec.tokens_seen else ""  # padding included (registry: tokens_seen)
    budget = ", ".join(p for p in (steps, tokens) if p)
    budget = f" for {budget}" if budget else ""
    if rec.kind == "base" or rec.init in (None, "scratch"):
        return f"trained from scratch on {mixture_text(rec.mixture)}{budget}"
    if rec.target is not None:
        replay = f" with {100 * (rec.replay or 0):.0f}% {rec.replay_language} replay" if rec.replay else " without replay"
        return f"continued from {rec.init} on {rec.target}{replay}{budget}"
    if rec.kind in ("cpt", "joint") and rec.mixture:
        return f"continued from {rec.init} on {mixture_text(rec.mixture)}{budget}"
    if rec.kind == "sft":
        return f"instruction-tuned from {rec.init}{budget}"
    return f"{rec.kind} model from the {rec.stage} stage, starting from {rec.init}"


def overview(ctx: Context, models: dict[str, ModelRecord]) -> dict[str, Any]:
    """What this run did: languages, data kept per language, models and how each was made."""
    stats = read_json(ctx.stage_dir("data") / "stats.json") or {}
    langs = ctx.recipe.languages
    table = Table(["kind", "how it was made"], corner="model")
    for name, rec in models.items():
        table.rows.append(Row(name, [Cell(rec.kind), Cell(made_how(rec), "text")]))
    return {
        "languages": [(code, lang_name(code)) for code in langs],
        "kept": sum(s.get("kept", 0) for s in stats.values()),
        "read": sum(s.get("read", 0) for s in stats.values()),
        "kept_by_lang": [(lang, stats[lang].get("kept", 0)) for lang in langs if lang in stats],
        "models": table if models else None,
    }


def data_section(ctx: Context) -> dict[str, Any] | None:
    """Kept, held out and dropped documents per language and reason; training tokens per language."""
    stats = read_json(ctx.stage_dir("data") / "stats.json")
    if not stats:
        return None
    tokens = (artifacts.read_manifest(ctx.stage_dir("tokens")) or {}).get("per_language", {})
    reasons = sorted({r for s in stats.values() for r in s.get("dropped", {})})
    head = ["read", "kept", "train docs", "held out", *(["train tokens"] if tokens else []), *[f"dropped: {r}" for r in reasons]]
    table = Table(head, corner="language")
    for lang, s in stats.items():
        cells = [num(s.get("read")), num(s.get("kept")), num(s.get("train_docs")), num(s.get("heldout_docs"))]
        if tokens:
            cells.append(num(tokens.get(lang, {}).get("tokens")))
        cells += [num(s.get("dropped", {}).get(r, 0)) for r in reasons]
        table.rows.append(Row(lang, [Cell(c, "muted" if c == "0" else "") for c in cells], lang_name(lang)))
    dropped = {r: sum(s.get("dropped", {}).get(r, 0) for s in stats.values()) for r in reasons}
    return {"table": table, "dropped": dropped, "sources": [s.name for s in ctx.recipe.data.sources]}


def _history(ctx: Context, rec: ModelRecord) -> list[dict[str, Any]]:
    return read_json(ctx.model_path(rec) / "train_log.json") or []


def training_section(ctx: Context, models: dict[str, ModelRecord]) -> dict[str, Any] | None:
    """Loss curves (overall and per language where logged), learning rate, throughput, per-model figures."""
    hist = {name: h for name, rec in models.items() if (h := _history(ctx, rec))}
    if not hist:
        return None
    cfg = ctx.recipe.train
    table = Table(["steps", "positions trained", "final loss", "wall-clock", "tokens/s"], corner="model")
    for name, h in hist.items():
        rec, man = models[name], artifacts.read_manifest(ctx.model_path(models[name])) or {}
        secs = man.get("seconds")
        logged = [r["tokens_per_s"] for r in h if r.get("tokens_per_s")]
        rate = sum(logged) / len(logged) if logged else None  # target tokens per second, as logged
        table.rows.append(Row(name, [Cell(num(rec.steps)), Cell(num(rec.tokens_seen)), Cell(num(man.get("final_loss"))),
                                     Cell(f"{secs:,.0f} s" if secs else "–", "" if secs else "muted"),
                                     Cell(f"{rate:,.0f}" if rate else "–", "" if rate else "muted")]))
    drop_empty_columns(table)  # wall-clock and tokens/s only where the model manifests record them
    charts = [("training loss per model", plots.curves({n: [(r["step"], r["loss"]) for r in h] for n, h in hist.items()},
                                                        "step", "train loss", log_y=_spans_decades(hist)))]
    by_lang = {n: c for n, h in hist.items() if (c := _per_lang_curves(h, "train"))}
    if by_lang:
        charts.append(("training loss per language", plots.small_multiples(by_lang, "step", "train loss")))
    heldout = {n: c for n, h in hist.items() if (c := _per_lang_curves(h, "heldout"))}
    if heldout:
        charts.append(("held-out loss per language", plots.small_multiples(heldout, "step", "held-out loss")))
    charts.append(("learning rate", plots.curves({n: [(r["step"], r["lr"]) for r in h if "lr" in r] for n, h in hist.items()},
                                                  "step", "learning rate")))
    rates = {n: [(r["step"], r["tokens_per_s"]) for r in h if "tokens_per_s" in r] for n, h in hist.items()}
    if rates := {n: pts for n, pts in rates.items() if pts}:
        charts.append(("throughput", plots.curves(rates, "step", "tokens / s")))
    missing = [what for what, have in (("loss per language", by_lang or heldout), ("tokens/s", rates)) if not have]
    settings = (f"sequence length {cfg.seq_len}, batch {cfg.batch_size} × {cfg.grad_accum} accumulation, "
                f"{cfg.optim.schedule} schedule, peak lr {cfg.optim.lr:g} with {cfg.optim.warmup_steps} warm-up steps, {cfg.precision}")
    return {"table": table, "charts": charts, "settings": settings, "missing": missing}


def _per_lang_curves(hist: list[dict[str, Any]], which: str) -> dict[str, list[tuple[float, float]]]:
    """Per language: (step, loss) of the training batches (`loss_<lang>`) or of held-out text (`val_loss`)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for r in hist:
        if which == "heldout":
            per = r.get("val_loss") or {}
        else:
            per = {k.removeprefix("loss_"): v for k, v in r.items() if k.startswith("loss_") and is_known(k.removeprefix("loss_"))}
        for lang, loss in per.items():
            out.setdefault(lang, []).append((r["step"], loss))
    return out


def _spans_decades(hist: dict[str, list[dict[str, Any]]]) -> bool:
    """A log scale only where the loss falls by more than 4x (early steps would flatten the rest)."""
    losses = [r["loss"] for h in hist.values() for r in h if r.get("loss", 0) > 0]
    return bool(losses) and max(losses) / min(losses) > 4


SAMPLES_FILE = "samples.json"  # what the train stage writes beside an instruct model


def samples_section(ctx: Context, models: dict[str, ModelRecord]) -> dict[str, Any] | None:
    """Per instruct model and language: the held-out prompt, the model's answer and the reference."""
    out = {}
    for name, rec in models.items():
        rows = read_json(ctx.model_path(rec) / SAMPLES_FILE)
        if rows:
            out[name] = [{"lang": r["lang"], "name": lang_name(r["lang"]), "answer": r.get("answer", ""),
                          "reference": r.get("reference", ""),
                          "prompt": next((m["content"] for m in reversed(r.get("prompt", [])) if m.get("role") == "user"), "")}
                         for r in rows]
    return out or None
