"""The release stage: `release/<model>/`, a folder per model ready for the Hugging Face Hub.

Each folder holds the model in safetensors (sharded above `release.max_shard_size`), its configs,
its tokenizer and a `README.md` model card built from the run's manifests alone (see
`occiforge.release.facts`). The models come from the model registry (`release.models`, default
all of them); their scores from `eval/<model>/results.json` when the eval stage ran, and a card
says plainly when it did not. With `release.push: true` and a Hub token each folder is uploaded
(`HfApi.upload_folder`); otherwise the stage logs what would go up. A push without a token stops
the run before any stage starts (one line, exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from occiforge import artifacts
from occiforge.context import Context, ModelRecord, Stage
from occiforge.errors import UserError
from occiforge.recipe import Recipe, ReleaseConfig


def _cfg(ctx: Context) -> ReleaseConfig:
    assert ctx.recipe.release is not None  # the stage is enabled only with a release section
    return ctx.recipe.release


def selected(ctx: Context) -> dict[str, ModelRecord]:
    """The registry's models the recipe releases, in registry order."""
    models, names = ctx.models(), _cfg(ctx).models
    if names is None:
        return models
    if unknown := [n for n in names if n not in models]:
        raise UserError(f"release.models: {unknown[0]!r} is not a model of this run (models: {', '.join(models) or 'none'})")
    return {n: rec for n, rec in models.items() if n in names}


def _eval_on(ctx: Context) -> bool:
    return "eval" in ctx.stages and ctx.stages["eval"].enabled(ctx.recipe)


def fingerprint(ctx: Context) -> str:
    models = {n: rec.fingerprint for n, rec in selected(ctx).items()}
    upstream = [ctx.fingerprint(n) for n in ("data", "tokenizer", "tokens", *(["eval"] if _eval_on(ctx) else []))]
    return artifacts.fingerprint("release/1", _cfg(ctx).model_dump(mode="json"), models, upstream)


def _base_model(rec: ModelRecord, released: dict[str, str]) -> str | None:
    """The card's `base_model`: a released model's repo, or a Hub id the model started from."""
    init = rec.init or "scratch"
    if init in released:
        return released[init] if "/" in released[init] else None  # a bare name is no Hub id
    looks_like_hub_id = init.count("/") == 1 and not init.startswith((".", "/", "~")) and not Path(init).exists()
    return init if looks_like_hub_id else None


def run(ctx: Context, fp: str) -> dict[str, Any]:
    from occiforge.release import card, export, facts, hub

    cfg, models = _cfg(ctx), selected(ctx)
    evaluated = (ctx.stage_dir("eval"), set(ctx.upstream("eval").get("models", []))) if _eval_on(ctx) else None
    token = hub_token_if_pushing(cfg)
    space = hub.namespace(cfg, token)
    repos = {name: hub.repo_name(cfg, name, space) for name in models}
    out: dict[str, Any] = {}
    with artifacts.staged_dir(ctx.stage_dir("release")) as tmp:
        for name, rec in models.items():
            with ctx.status(f"release: exporting {name}…"):
                export.export_model(ctx.model_path(rec), tmp / name, rec.kind, cfg.max_shard_size)
                f = facts.model_facts(ctx, rec, evaluated)
                card.render(f, cfg.license, repos[name], _base_model(rec, repos)).save(str(tmp / name / "README.md"))
            out[name] = {"folder": f"release/{name}", "repo_id": repos[name], "evaluated": f["eval"] is not None,
                         "files": hub.listing(tmp / name)}
            if f["eval"] is None:
                ctx.log(f"  [yellow]{name}: not evaluated in this run; its card says so and reports no scores[/yellow]")
    for name, row in out.items():  # upload from the final folders, after the stage's output is in place
        folder = ctx.stage_dir("release") / name
        if token is None:
            size = sum(row["files"].values()) / 1e6
            ctx.log(f"  dry run: would upload {len(row['files'])} files ({size:.1f} MB) from {folder} to {row['repo_id']}: "
                    + ", ".join(row["files"]))
        else:
            with ctx.status(f"release: uploading {name} to {row['repo_id']}…"):
                row.update(hub.upload(folder, row["repo_id"], cfg, token, f"occiforge release of {name} ({ctx.recipe.name})"))
            ctx.log(f"  uploaded {name} → {row['commit_url']}")
        row["pushed"] = token is not None
    return {"released": out, "push": cfg.push}


def hub_token_if_pushing(cfg: ReleaseConfig) -> str | None:
    """The Hub token when the recipe pushes; a one-line error when it pushes without one."""
    if not cfg.push:
        return None
    from occiforge.release.hub import hub_token

    token = hub_token()
    if not token:
        raise UserError("release.push is true but there is no Hugging Face token (set HF_TOKEN or run `hf auth login`); "
                        "nothing was uploaded")
    return token


def preflight(ctx: Context) -> None:
    """A push without a token fails before any stage runs, not after hours of training."""
    hub_token_if_pushing(_cfg(ctx))


def _enabled(r: Recipe) -> bool:
    return r.release is not None


STAGE = Stage(name="release", folder="release", reads=("data", "tokenizer", "tokens"), fingerprint=fingerprint, run=run,
              uses_models=True, enabled=_enabled, enabled_by="a release section", preflight=preflight)
