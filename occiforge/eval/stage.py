"""The eval stage: bits per byte on held-out text, per model and language.

`eval/<model>/results.json` per model (cached on its own), `eval/results.json` for the table.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any

import torch

from occiforge import artifacts
from occiforge.data.stage import iter_texts
from occiforge.eval.bpb import bits_per_byte
from occiforge.tokenizer.stage import load_tokenizer
from occiforge.train.model import load_causal_lm
from occiforge.train.stage import model_fingerprints


def _config(ctx: Any) -> dict[str, Any]:
    r = ctx.recipe
    cfg = r.eval.model_dump(mode="json", exclude={"batch_size", "extra_models"})
    cfg["max_len"] = r.eval.max_len or r.train.seq_len + 1
    cfg["languages"] = r.eval.languages or r.languages
    return cfg


def targets(ctx: Any) -> dict[str, tuple[str, str]]:
    """Model name -> (path or hub id, fingerprint): the run's models, then the extra ones."""
    out = {name: (str(ctx.stage_dir("train") / name), fp) for name, fp in model_fingerprints(ctx).items()}
    out.update({name: (path, f"external:{path}") for name, path in ctx.recipe.eval.extra_models.items()})
    return out


def fingerprint(ctx: Any) -> str:
    return artifacts.fingerprint("eval/1", _config(ctx), ctx.fingerprint("data"), {k: v[1] for k, v in targets(ctx).items()})


def evaluate_model(path: str, cfg: dict[str, Any], texts: dict[str, list[str]], batch_size: int) -> dict[str, Any]:
    model = load_causal_lm(path)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    tok = load_tokenizer(path)
    return {"bpb": {lang: bits_per_byte(model, tok, docs, cfg["max_len"], batch_size) for lang, docs in texts.items()}}


def run(ctx: Any, fp: str) -> dict[str, Any]:
    ctx.upstream("data")
    if ctx.recipe.models:
        ctx.upstream("train")
    cfg = _config(ctx)
    limit = cfg["max_docs_per_language"]
    texts = {lang: list(islice(iter_texts(ctx.stage_dir("data"), lang, "heldout"), limit)) for lang in cfg["languages"]}
    if missing := [lang for lang, docs in texts.items() if not docs]:
        ctx.log(f"  [yellow]no held-out text for {', '.join(missing)}: not scored[/yellow]")
        texts = {lang: docs for lang, docs in texts.items() if docs}
    table: dict[str, dict[str, float]] = {}
    for name, (path, model_fp) in targets(ctx).items():
        folder = ctx.stage_dir("eval") / name
        efp = artifacts.fingerprint("eval-model/1", cfg, ctx.fingerprint("data"), model_fp)
        if not artifacts.is_complete(folder, efp):
            with ctx.status(f"eval: {name}"):
                results = evaluate_model(path, cfg, texts, ctx.recipe.eval.batch_size)
            with artifacts.staged_dir(folder) as tmp:
                artifacts.write_json_atomic(tmp / "results.json", {"model": name, "path": path, **results})
            artifacts.write_manifest(folder, efp, model=name)
        results = read_results(folder)
        table[name] = {lang: round(row["bpb"], 5) for lang, row in results["bpb"].items()}
        ctx.log(f"  {name}: " + "  ".join(f"{lang} {v:.3f}" for lang, v in table[name].items()))
    artifacts.write_json_atomic(ctx.stage_dir("eval") / "results.json", {"metric": "bpb", "languages": cfg["languages"], "bpb": table})
    return {"models": list(table), "bpb": table}


def read_results(folder: Path) -> dict[str, Any]:
    import json

    return json.loads((folder / "results.json").read_text())
