"""Everything a model card says about one model, gathered from the run's artifacts only.

Sources: the model registry entry and the model's own manifest (how it was made, steps, tokens,
loss, world size, and wall-clock or device where the train stage records them), the data stage's
`stats.json`, the tokens and tokenizer manifests and `tokenizer/extension.json`, and
`eval/<model>/results.json` (with the model it started from beside it). Settings that are
configuration, not results (sequence length, schedule, sources), come from the resolved recipe.
A figure no artifact holds is absent (None), so the card says "not recorded" instead of a number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from occiforge import artifacts
from occiforge.context import Context, ModelRecord
from occiforge.languages import get as get_language
from occiforge.languages import is_known
from occiforge.lm import read_extension


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def trained_languages(rec: ModelRecord) -> list[str]:
    """The languages the model saw in training, in mixture order (its target first where it has one)."""
    langs = [lang for lang, w in (rec.mixture or {}).items() if w > 0]
    extra = getattr(rec, "languages", None) or []  # producers without a mixture may list them
    if rec.target and rec.target in langs:
        langs.remove(rec.target)
        langs.insert(0, rec.target)
    return langs + [lang for lang in extra if lang not in langs]


def data_rows(ctx: Context, rec: ModelRecord, langs: list[str]) -> list[dict[str, Any]]:
    """Per training language: sources, documents kept, corpus tokens, mixture share, tokens seen at that share."""
    stats = _json(ctx.stage_dir("data") / "stats.json") or {}
    tokens = (artifacts.read_manifest(ctx.stage_dir("tokens")) or {}).get("per_language", {})
    used = (artifacts.read_manifest(ctx.model_path(rec)) or {}).get("per_language") or {}  # the plan's own count
    weights = {lang: w for lang, w in (rec.mixture or {}).items() if w > 0}
    total = sum(weights.values())
    planned = next((pm for pm in ctx.recipe.plan() if pm.name == rec.name), None)
    chat = getattr(planned, "chat", None)  # an instruct model trains on conversations, not the curated corpus
    rows = []
    for lang in langs:
        share = weights[lang] / total if lang in weights and total else None
        if chat:
            sources = [c.path for c in chat if lang in (c.languages or [])]
            documents, corpus = None, used.get(lang, {}).get("tokens_per_epoch")
        else:
            sources = [s.name for s in ctx.recipe.data.sources if lang in (s.languages or ctx.recipe.languages)]
            documents, corpus = stats.get(lang, {}).get("train_docs"), tokens.get(lang, {}).get("tokens")
        rows.append({"lang": lang, "name": get_language(lang).name if is_known(lang) else lang, "sources": sources,
                     "documents": documents, "corpus_tokens": corpus, "share": share,
                     "tokens_seen": used.get(lang, {}).get("tokens"), "epochs": used.get(lang, {}).get("epochs")})
    return rows


def hub_datasets(ctx: Context, rec: ModelRecord, langs: list[str]) -> list[str]:
    """Hub dataset ids among the sources that served the model's languages (`hf:<id>`); local ones have none."""
    planned = next((pm for pm in ctx.recipe.plan() if pm.name == rec.name), None)
    sources = [(s.path, s.languages or ctx.recipe.languages) for s in ctx.recipe.data.sources]
    sources += [(c.path, c.languages) for c in getattr(planned, "chat", None) or []]
    return list(dict.fromkeys(path.removeprefix("hf:") for path, served in sources
                              if path.startswith("hf:") and set(served) & set(langs)))


def tokenizer_facts(ctx: Context, langs: list[str]) -> dict[str, Any]:
    folder = ctx.stage_dir("tokenizer")
    man = artifacts.read_manifest(folder) or {}
    per_lang = man.get("per_language", {})
    ext = read_extension(folder)
    shown = [lang for lang in dict.fromkeys([*langs, "en"]) if lang in per_lang]
    rows = [{"lang": lang, "fertility": per_lang[lang].get("fertility"), "parity": per_lang[lang].get("parity"),
             "before": (ext or {}).get("fertility_before", {}).get(lang)} for lang in shown]
    return {"vocab_size": man.get("vocab_size"), "pretrained": ctx.recipe.tokenizer.pretrained,
            "kind": ctx.recipe.tokenizer.kind, "extension": ext and {k: ext[k] for k in ("base", "new_tokens", "languages", "threshold")},
            "rows": rows}


def training_facts(ctx: Context, rec: ModelRecord) -> dict[str, Any]:
    man = artifacts.read_manifest(ctx.model_path(rec)) or {}
    cfg = ctx.recipe.train
    planned = next((pm for pm in ctx.recipe.plan() if pm.name == rec.name), None)
    logged = [r["tokens_per_s"] for r in _json(ctx.model_path(rec) / "train_log.json") or [] if r.get("tokens_per_s")]
    return {"steps": rec.steps, "tokens_seen": rec.tokens_seen, "final_loss": man.get("final_loss"),
            "tokens_per_s": sum(logged) / len(logged) if logged else None,
            "seq_len": cfg.seq_len, "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum,
            "schedule": cfg.optim.schedule, "warmup_steps": man.get("warmup_steps", cfg.optim.warmup_for(rec.steps or 0)), "lr": planned.lr if planned else None,
            "min_lr_ratio": cfg.optim.min_lr_ratio, "precision": cfg.precision, "world_size": man.get("world_size"),
            "device": man.get("device"), "seconds": man.get("seconds"), "resumed_from_step": man.get("resumed_from_step")}


def _base_name(ctx: Context, rec: ModelRecord, scored: set[str]) -> str | None:
    """The scored model this one started from: a registry model, or an eval.extra_models entry by path."""
    by_path = {path: name for name, path in ctx.recipe.eval.extra_models.items()}
    init = rec.init or ""
    name = init if init in scored else by_path.get(init)
    return name if name in scored and name != rec.name else None


def eval_tables(ctx: Context, rec: ModelRecord, evaluated: tuple[Path, set[str]] | None) -> dict[str, Any] | None:
    """This model's bits per byte and multiple-choice rows, each beside its base model's; None if not
    evaluated. `evaluated` is (eval folder, models its up-to-date manifest lists), None if eval did not run."""
    if evaluated is None or rec.name not in evaluated[1]:
        return None
    eval_dir, scored = evaluated
    mine = _json(eval_dir / rec.name / "results.json")
    if mine is None:
        return None
    metric_of = (_json(eval_dir / "leaderboard.json") or {}).get("metric", {})
    base = _base_name(ctx, rec, scored)
    theirs = (_json(eval_dir / base / "results.json") if base else None) or {}
    bpb = [{"lang": lang, "value": row["bpb"], "base": theirs.get("bpb", {}).get(lang, {}).get("bpb")}
           for lang, row in (mine.get("bpb") or {}).items()]
    mc = []
    for task, per_lang in (mine.get("mc") or {}).items():
        for lang, row in per_lang.items():
            m = metric_of.get(task, "acc") if metric_of.get(task, "acc") in row else "acc"
            other = theirs.get("mc", {}).get(task, {}).get(lang, {})
            mc.append({"task": task, "lang": lang, "metric": m, "value": row[m], "stderr": row.get(f"{m}_stderr"),
                       "n": row.get("n"), "chance": row.get("chance"), "fewshot": row.get("fewshot"), "base": other.get(m)})
    return {"base": base, "bpb": bpb, "mc": mc}


def model_facts(ctx: Context, rec: ModelRecord, evaluated: tuple[Path, set[str]] | None) -> dict[str, Any]:
    """The card's facts for one model (see `eval_tables` for `evaluated`)."""
    langs = trained_languages(rec)
    return {"name": rec.name, "kind": rec.kind, "stage": rec.stage, "init": rec.init, "target": rec.target,
            "replay": rec.replay, "replay_language": rec.replay_language, "mixture": rec.mixture, "languages": langs,
            "data": data_rows(ctx, rec, langs), "datasets": hub_datasets(ctx, rec, langs),
            "tokenizer": tokenizer_facts(ctx, langs), "training": training_facts(ctx, rec),
            "eval": eval_tables(ctx, rec, evaluated), "recipe": ctx.recipe.name}
