"""The transfer stage: the transfer matrix between the languages of a bilingual models entry.

`transfer.models` names a `models.<key>` entry with `targets`: one model per language, each the
same base continued on that language (with `replay: 0`, on that language alone). The eval stage
has already scored the base and every one of them on every language of the run, so this stage
reads those bits per byte (it trains and scores nothing itself) and writes the relative change
against the base, its hierarchical clustering (a dendrogram) and the suggested expert groups:
in the manifest, `transfer.json`, and `section.html` for the report.
"""

from __future__ import annotations

import html
from typing import Any

from occiforge import artifacts
from occiforge.context import Context, Stage
from occiforge.errors import UserError

NAME = "transfer"


def _setup(ctx: Context) -> tuple[str, dict[str, str]]:
    """The base's name and, per language, the name of the model continued on it."""
    key = ctx.recipe.transfer.models  # type: ignore[union-attr]
    entry = ctx.recipe.models[key]
    return entry.init, {lang: f"{key}-{lang}" for lang in entry.targets}  # type: ignore[union-attr]


def fingerprint(ctx: Context) -> str:
    return artifacts.fingerprint("transfer/1", ctx.recipe.transfer.model_dump(mode="json"), ctx.fingerprint("eval"))  # type: ignore[union-attr]


def _scores(ctx: Context, base: str, per_lang: dict[str, str]) -> dict[str, dict[str, float]]:
    bpb = ctx.upstream("eval")["bpb"]
    langs = list(per_lang)
    for model in [base, *per_lang.values()]:
        if model not in bpb:
            raise UserError(f"transfer: model {model!r} was not scored by eval (scored: {', '.join(bpb)})")
        if missing := [lang for lang in langs if lang not in bpb[model]]:
            raise UserError(f"transfer: eval did not score {model} on {missing}; every language of the set must be in eval.languages")
    return bpb


def run(ctx: Context, fp: str) -> dict[str, Any]:
    from occiforge.experts.transfer import change_matrix, cluster

    cfg = ctx.recipe.transfer
    base, per_lang = _setup(ctx)
    langs = list(per_lang)
    bpb = _scores(ctx, base, per_lang)
    change = change_matrix(bpb[base], {lang: bpb[m] for lang, m in per_lang.items()}, langs)
    tree = cluster(change, langs, cfg.groups, cfg.linkage)  # type: ignore[union-attr]
    replay = ctx.recipe.models[cfg.models].replay  # type: ignore[union-attr]
    result = {"base": base, "languages": langs, "models": per_lang, "replay": replay,
              "change": {i: {j: round(float(change[a, b]), 5) for b, j in enumerate(langs)} for a, i in enumerate(langs)},
              **tree}
    out = ctx.stage_dir(NAME)
    artifacts.write_json_atomic(out / "transfer.json", result)
    write_section(ctx, result, change)
    ctx.log("  suggested expert groups: " + "  ".join("{" + ", ".join(g) + "}" for g in result["groups"]))
    return {"base": base, "languages": langs, "groups": result["groups"], "change": result["change"], "file": "transfer.json"}


def write_section(ctx: Context, result: dict[str, Any], change: Any) -> None:
    import numpy as np

    from occiforge.experts.plots import dendrogram, heatmap
    from occiforge.viz import image_tag

    out, langs = ctx.stage_dir(NAME), result["languages"]
    heatmap((100 * change).tolist(), langs, langs, "bpb change vs base (%): rows trained on, columns scored", out / "transfer.png",
            fmt="{:.0f}", cmap="RdBu_r", center=True)
    dendrogram(np.asarray(result["linkage"]), langs, result["threshold"], out / "dendrogram.png")
    note = f" with {result['replay']:.0%} replay" if result["replay"] else ""
    parts = ["<h2>Transfer between languages</h2>",
             (f"<p>The base <code>{html.escape(result['base'])}</code> continued on each language{note}, scored on every "
              "language: relative change in bits per byte against the base (negative: training on the row's language helps "
              "the column's).</p>"),
             image_tag(out / "transfer.png", "transfer matrix"),
             "<p>Hierarchical clustering on 1 − the symmetrised transfer (each language's gain as a share of its own):</p>",
             image_tag(out / "dendrogram.png", "dendrogram of the languages"),
             "<p>Suggested expert groups: " + "; ".join("{" + ", ".join(map(html.escape, g)) + "}" for g in result["groups"]) + "</p>"]
    artifacts.write_text_atomic(out / artifacts.SECTION, "\n".join(parts) + "\n")


STAGE = Stage(name=NAME, folder="transfer", reads=("eval",), fingerprint=fingerprint, run=run, uses_models=True,
              enabled=lambda r: r.transfer is not None, enabled_by="transfer")
