"""The moe stage: each `moe.<name>` entry is one Mixtral-format mixture, `moe/<name>/` (HF folder).

Experts (models of this run or HF folders) are checked first, every entry before any weights are
written: one architecture, one tokenizer, training text for each calibration language. Each
mixture is then assembled, routed by language, optionally trained briefly, and its routing
analysed on held-out text: the share of each language's tokens whose first choice is each
expert, per layer and averaged, in the manifest (`routing`) and as a heatmap in `section.html`.
The manifest lists the mixtures (kind "moe") in the model registry, so eval scores them.
"""

from __future__ import annotations

import html
from typing import Any

from occiforge import artifacts
from occiforge.context import Context, ModelRecord, Stage
from occiforge.experts.common import (
    Source,
    common_init,
    default_base,
    resolve,
    router_optim,
)
from occiforge.recipe import MoeEntry

NAME = "moe"
Plan = tuple[list[Source], Source | None, list[str]]


def _inputs(ctx: Context, name: str, entry: MoeEntry) -> Plan:
    what = f"moe {name!r}"
    experts = resolve(ctx, NAME, what, entry.experts)
    base = default_base(ctx, NAME, what, entry.base, experts) if entry.shared == "base" else None
    langs = entry.languages or [e.record.target if e.record else None for e in experts]
    return experts, base, langs  # type: ignore[return-value] - the recipe checked every expert has a language


def model_fingerprint(ctx: Context, entry: MoeEntry, plan: Plan) -> str:
    experts, base, langs = plan
    t = ctx.recipe.train
    training = {"seq_len": t.seq_len, "batch_size": t.batch_size, "optim": t.optim.model_dump(mode="json"), "precision": t.precision}
    if entry.router.train != "none" and (optim := router_optim(ctx.recipe, entry)).warmup_moved(entry.router.steps):
        training["warmup"] = optim.warmup_for(entry.router.steps)
    return artifacts.fingerprint("moe-model/1", entry.model_dump(mode="json", exclude={"experts", "base", "languages"}), langs,
                                 [e.fingerprint for e in experts], base and base.fingerprint, ctx.fingerprint("data"),
                                 ctx.recipe.seed, training)


def fingerprint(ctx: Context) -> str:
    fps = {name: model_fingerprint(ctx, entry, _inputs(ctx, name, entry)) for name, entry in ctx.recipe.moe.items()}
    return artifacts.fingerprint("moe/1", fps)


def _check(ctx: Context, plans: dict[str, Plan]) -> None:
    from occiforge.experts.build import check_calibration
    from occiforge.experts.tensors import check_experts

    for name, (experts, base, langs) in plans.items():
        what = f"moe {name!r}"
        check_experts(what, {s.name: s.path for s in [*experts, *([base] if base else [])]})
        check_calibration(ctx, what, experts, langs)


def run(ctx: Context, fp: str) -> dict[str, Any]:
    from occiforge.experts.build import build_mixture

    plans = {name: _inputs(ctx, name, entry) for name, entry in ctx.recipe.moe.items()}
    _check(ctx, plans)  # every entry, before any weights are written
    models, routing = [], {}
    for name, entry in ctx.recipe.moe.items():
        folder, mfp = ctx.stage_dir(NAME) / name, model_fingerprint(ctx, entry, plans[name])
        if ctx.is_forced(NAME) or not artifacts.is_complete(folder, mfp):
            with ctx.status(f"moe: {name}"):
                info = build_mixture(ctx, name, entry, *plans[name], mfp)
            artifacts.write_manifest(folder, mfp, **info)
        info = artifacts.read_manifest(folder) or {}
        routing[name] = info["routing"]
        own = {lang: shares["mean"][i] for i, lang in enumerate(info["languages"]) if (shares := info["routing"].get(lang))}
        ctx.log(f"  {name}: own-expert share (layer mean) " + "  ".join(f"{k} {v:.2f}" for k, v in own.items()))
        rec = ModelRecord(name=name, folder=f"{ctx.stages[NAME].folder}/{name}", kind="moe", stage=NAME, fingerprint=mfp,
                          init=plans[name][1].name if plans[name][1] else common_init(plans[name][0]), tokens_seen=info.get("train_tokens"),
                          steps=info.get("train_steps"), experts=info["experts"], languages=info["languages"],
                          top_k=entry.top_k, router_train=entry.router.train)
        models.append(rec.model_dump(mode="json"))
    write_section(ctx, routing, {m["name"]: m for m in models})
    return {"models": models, "routing": routing}


def write_section(ctx: Context, routing: dict[str, dict[str, Any]], records: dict[str, dict[str, Any]]) -> None:
    """The report's part: per mixture, a heatmap of each language's share per expert (layer mean)."""
    from occiforge.experts.plots import heatmap
    from occiforge.viz import image_tag

    out = ctx.stage_dir(NAME)
    parts = ["<h2>Mixture of experts: routing</h2>",
             "<p>Share of each language's held-out tokens whose first choice is each expert, averaged over layers.</p>"]
    for name, by_lang in routing.items():
        rec = records[name]
        cols = [f"{e} ({lang})" for e, lang in zip(rec["experts"], rec["languages"])]
        rows = list(by_lang)
        png = out / f"routing-{name}.png"
        heatmap([by_lang[lang]["mean"] for lang in rows], rows, cols, f"{name}: top-1 routing share (layer mean)", png)
        layers = "".join(f"<tr><th>{html.escape(lang)}</th>" + "".join(
            f"<td>{'/'.join(f'{row[j]:.2f}' for row in by_lang[lang]['layers'])}</td>" for j in range(len(cols))) + "</tr>"
            for lang in rows)
        parts += [f"<h3>{html.escape(name)} (top-{rec['top_k']}, router training: {html.escape(rec['router_train'])})</h3>",
                  image_tag(png, f"routing shares of {name}"),
                  "<p>Per layer (layer 0 / layer 1 / ...):</p><table><tr><th></th>"
                  + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + f"</tr>{layers}</table>"]
    artifacts.write_text_atomic(out / artifacts.SECTION, "\n".join(parts) + "\n")


STAGE = Stage(name=NAME, folder="moe", reads=("data",), fingerprint=fingerprint, run=run, produces_models=True,
              enabled=lambda r: bool(r.moe), enabled_by="moe")
