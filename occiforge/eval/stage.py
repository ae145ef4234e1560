"""The eval stage: bits per byte on held-out text and multiple-choice tasks, per model and language.

`eval/<model>/results.json` per model (cached on its own), `eval/results.json` for the tables
(`bpb` as before, `mc` added) and `eval/leaderboard.{md,json}` (models x languages x tasks).
Every model in the model registry is scored (whichever stage published it), plus
`eval.extra_models` (e.g. the base model the run started from). `--force eval` rescores them all.
torch and transformers are imported only when a model is scored.
"""

from __future__ import annotations

import hashlib
import math
import json
from itertools import islice
from pathlib import Path
from typing import Any

from occiforge import artifacts
from occiforge.context import Context, Stage
from occiforge.errors import UserError
from occiforge.io import iter_texts
from occiforge.lm import check_available, check_hub_dataset


def _source_digest(path: str) -> str:
    """What a task source holds: the bytes of its local JSONL files, or the hub id as given."""
    from occiforge.eval.tasks import BUILTIN_LOCAL, builtin_folder

    if path.startswith("builtin:") and path.removeprefix("builtin:") in BUILTIN_LOCAL:
        folder = builtin_folder(path.removeprefix("builtin:"))
    elif path.startswith(("builtin:", "hf:")):
        return path
    else:
        folder = Path(path)
    files = sorted(folder.rglob("*.jsonl")) if folder.is_dir() else [folder]
    h = hashlib.sha256()
    for f in files:
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def _config(ctx: Context) -> dict[str, Any]:
    r = ctx.recipe
    cfg = r.eval.model_dump(mode="json", exclude={"batch_size", "extra_models"})
    cfg["max_len"] = r.eval.max_len or r.train.seq_len + 1
    cfg["languages"] = r.eval.languages or r.languages
    if r.eval.mc:
        cfg["mc_data"] = [_source_digest(m.path) for m in r.eval.mc]
    return cfg


def targets(ctx: Context) -> dict[str, tuple[str, str]]:
    """Model name -> (path or hub id, fingerprint): the registry's models, then the extra ones."""
    out = {name: (str(ctx.model_path(rec)), rec.fingerprint) for name, rec in ctx.models().items()}
    out.update({name: (path, f"external:{path}") for name, path in ctx.recipe.eval.extra_models.items()})
    return out


def fingerprint(ctx: Context) -> str:
    return artifacts.fingerprint("eval/2", _config(ctx), ctx.fingerprint("data"), {k: v[1] for k, v in targets(ctx).items()})


def mc_tasks(ctx: Context, langs: list[str]) -> list[Any]:
    """The recipe's multiple-choice tasks in the evaluated languages (each task's own where it has fewer)."""
    from occiforge.eval.tasks import load_tasks

    ev = ctx.recipe.eval
    tasks = []
    for m in ev.mc:
        shots = m.fewshot if m.fewshot is not None else ev.fewshot
        tasks += load_tasks(m.path, m.name, langs, shots, m.max_items, m.template, m.prompt)
    return tasks


def evaluate_model(path: str, cfg: dict[str, Any], texts: dict[str, list[str]], batch_size: int,
                   tasks: list[Any] | None = None, posed: dict[tuple[str, str], list[Any]] | None = None) -> dict[str, Any]:
    from occiforge.eval.bpb import bits_per_byte
    from occiforge.eval.scorer import Scorer
    from occiforge.eval.suite import default_device, score_mc
    from occiforge.lm import load_causal_lm, load_tokenizer

    model = load_causal_lm(path).to(default_device())
    tok = load_tokenizer(path)
    out: dict[str, Any] = {"bpb": {}}
    if cfg.get("bpb", True):
        out["bpb"] = {lang: bits_per_byte(model, tok, docs, cfg["max_len"], batch_size) for lang, docs in texts.items()}
        if bad := [lang for lang, row in out["bpb"].items() if not math.isfinite(row["bpb"])]:
            raise UserError(f"eval: model {path} gives non-finite log-likelihoods on {', '.join(bad)} (broken weights?)")
    if tasks:
        # multiple choice scores on the model's own context length, as lm-eval does
        out["mc"], _ = score_mc(Scorer(model, tok, batch_size=max(batch_size, 16)), tasks, posed)
    return out


def run(ctx: Context, fp: str) -> dict[str, Any]:
    from occiforge.eval import leaderboard
    from occiforge.eval.suite import pose_all

    cfg = _config(ctx)
    limit = cfg["max_docs_per_language"]
    texts = {lang: list(islice(iter_texts(ctx.stage_dir("data"), lang, "heldout"), limit)) for lang in cfg["languages"]}
    if missing := [lang for lang, docs in texts.items() if not docs]:
        ctx.warn(f"eval: no held-out text for {', '.join(missing)}: no bits per byte for {'it' if len(missing) == 1 else 'them'}")
        texts = {lang: docs for lang, docs in texts.items() if docs}
    tasks = mc_tasks(ctx, cfg["languages"])
    posed = pose_all(tasks, cfg["seed"]) if tasks else None
    table: dict[str, dict[str, float]] = {}
    mc: dict[str, Any] = {}
    for name, (path, model_fp) in targets(ctx).items():
        folder = ctx.stage_dir("eval") / name
        efp = artifacts.fingerprint("eval-model/2", cfg, ctx.fingerprint("data"), model_fp)
        if ctx.is_forced("eval") or not ctx.is_current(folder, efp, f"eval of {name}"):
            with ctx.status(f"eval: {name}"):
                results = evaluate_model(path, cfg, texts, ctx.recipe.eval.batch_size, tasks, posed)
            with artifacts.staged_dir(folder) as tmp:
                artifacts.write_json_atomic(tmp / "results.json", {"model": name, "path": path, **results})
            artifacts.write_manifest(folder, efp, model=name)
        results = read_results(folder)
        table[name] = {lang: round(row["bpb"], 5) for lang, row in results["bpb"].items()}
        if results.get("mc"):
            mc[name] = results["mc"]
        ctx.log(f"  {name}: " + "  ".join(f"{lang} {v:.3f}" for lang, v in table[name].items()))
    out_dir = ctx.stage_dir("eval")
    summary: dict[str, Any] = {"metric": "bpb", "languages": cfg["languages"], "bpb": table}
    if mc:
        summary["mc"] = mc
        board = leaderboard.build(mc)
        leaderboard.write(board, out_dir)
        ctx.log("  leaderboard (mean over tasks): " + "  ".join(f"{m} {100 * v:.1f}" for m, v in board["overall"].items()))
    artifacts.write_json_atomic(out_dir / "results.json", summary)
    return {"models": list(table), "bpb": table, **({"leaderboard": "leaderboard.md"} if mc else {})}


def read_results(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "results.json").read_text())


def _enabled(r: Any) -> bool:
    return r.eval.bpb or bool(r.eval.mc)


def preflight(ctx: Context) -> None:
    """Every model and task source named by the eval section is there before any stage runs."""
    from occiforge.eval.tasks import hub_dataset

    for name, path in ctx.recipe.eval.extra_models.items():
        check_available(path, f"eval.extra_models.{name}")
    for i, m in enumerate(ctx.recipe.eval.mc):
        try:
            dataset = hub_dataset(m.path, m.template)
        except UserError as e:
            raise UserError(f"eval.mc.{i}: {e}") from None
        if dataset is not None:
            check_hub_dataset(dataset, f"eval.mc.{i}")
        elif dataset is None and not m.path.startswith("builtin:") and not Path(m.path).exists():
            raise UserError(f"eval.mc.{i}: {m.path}: not found")


STAGE = Stage(name="eval", folder="eval", reads=("data",), fingerprint=fingerprint, run=run, uses_models=True,
              enabled=_enabled, enabled_by="eval.bpb or eval.mc", preflight=preflight)
