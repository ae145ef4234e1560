"""The report stage: `report/index.html`, one self-contained page (every chart inlined, no network).

It reads only artifacts: data statistics, the tokens manifest, evaluation results and the
leaderboard, the model registry with each model's manifest and training log, and the sections
other stages write for it (`section.html` in their folders): a new stage joins the report by
writing one. The page reads top-down: what the run did, data, tokenizer, training, evaluation,
then every other stage's section in run order. A stage that did not run has no section.

The page is rendered with Jinja2 templates shipped in `occiforge/report/templates/`
(autoescaped: names from a recipe cannot inject markup; stage sections are trusted HTML).
"""

from __future__ import annotations

import html
import re
from typing import Any

from occiforge import artifacts
from occiforge.context import Context, Stage

# the report's own narrative in its order (stages, then the instruct samples the train stage
# leaves beside instruct models); every other stage's section follows, in run order
NARRATIVE = ("data", "tokenizer", "tokens", "train", "eval", "samples")
TEMPLATES = {"data": "data.html.j2", "train": "training.html.j2", "eval": "evaluation.html.j2", "samples": "samples.html.j2"}
TITLES = {"overview": "Overview", "data": "Data", "train": "Training", "eval": "Evaluation", "samples": "Instruct samples"}


def fingerprint(ctx: Context) -> str:
    # every earlier stage may feed a section: the report is current only if all of them are
    upstream = [ctx.fingerprint(n) for n in _earlier(ctx)]
    return artifacts.fingerprint("report/3", ctx.recipe.report.model_dump(mode="json"), upstream)


def _earlier(ctx: Context) -> list[str]:
    names = list(ctx.stages)
    return [n for n in names[: names.index("report")] if ctx.stages[n].enabled(ctx.recipe)]


def _stage_sections(ctx: Context) -> dict[str, str]:
    """The `section.html` each enabled stage wrote for the report, by stage, in run order."""
    paths = {n: ctx.stage_dir(n) / artifacts.SECTION for n in _earlier(ctx)}
    return {n: p.read_text(encoding="utf-8") for n, p in paths.items() if p.is_file()}


def _title(fragment: str, stage: str) -> str:
    """A stage section's nav label: the text of its first heading, else the stage's name."""
    m = re.search(r"<h[1-3][^>]*>(.*?)</h[1-3]>", fragment, re.DOTALL | re.IGNORECASE)
    return html.unescape(re.sub(r"<[^>]+>", "", m.group(1))).strip() if m else stage


def sections(ctx: Context) -> list[dict[str, Any]]:
    """The page's sections in reading order: each is a template with data, or a stage's own HTML."""
    from markupsafe import Markup

    from occiforge.report import collect, evaluation

    models = ctx.models()
    own = {"data": lambda: collect.data_section(ctx), "train": lambda: collect.training_section(ctx, models),
           "eval": lambda: evaluation.eval_section(ctx, models), "samples": lambda: collect.samples_section(ctx, models)}
    fragments = _stage_sections(ctx)
    out = [{"id": "overview", "title": TITLES["overview"], "template": "overview.html.j2",
            "data": collect.overview(ctx, models), "fragment": None}]
    order = [n for n in NARRATIVE if n in ctx.stages or n in own] + [n for n in fragments if n not in NARRATIVE]
    for name in order:
        if name in own and (data := own[name]()) is not None:
            out.append({"id": name, "title": TITLES[name], "template": TEMPLATES[name], "data": data, "fragment": None})
        if name in fragments:
            out.append({"id": f"stage-{name}", "title": _title(fragments[name], name), "template": None, "data": None,
                        "fragment": Markup(fragments[name])})  # trusted: written by our own stages
    return out


def render(ctx: Context) -> str:
    """The whole page as one HTML string."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("occiforge.report", "templates"), undefined=StrictUndefined,
                      autoescape=select_autoescape(["html", "j2"], default_for_string=True), trim_blocks=True, lstrip_blocks=True)
    title = ctx.recipe.report.title or f"occiforge run: {ctx.recipe.name}"
    return env.get_template("report.html.j2").render(title=title, recipe=ctx.recipe.name, run_dir=ctx.run_dir.name,
                                                     sections=sections(ctx))


def run(ctx: Context, fp: str) -> dict[str, Any]:
    with ctx.status("report: rendering…"):
        page = render(ctx)
    with artifacts.staged_dir(ctx.stage_dir("report")) as tmp:
        (tmp / "index.html").write_text(page, encoding="utf-8")
    ctx.log(f"  report: {ctx.stage_dir('report') / 'index.html'} ({len(page.encode()) / 1e6:.1f} MB, self-contained)")
    return {"index": "index.html", "bytes": len(page.encode())}


STAGE = Stage(name="report", folder="report", reads=("data", "tokenizer", "eval"), fingerprint=fingerprint, run=run,
              uses_models=True, enabled=lambda r: r.report.enabled, enabled_by="report.enabled")
