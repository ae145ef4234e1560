"""Building one mixture for the moe stage: assemble, route by language, train briefly, analyse, save.

Everything happens inside a staged folder, so an interrupted or refused build never leaves a
checkpoint that looks complete; a brief training resumes from `moe/.<name>.ckpt/` like the train
stage's models do (the one training loop, `occiforge.loop`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from occiforge import artifacts
from occiforge.context import Context
from occiforge.errors import UserError
from occiforge.experts import router
from occiforge.experts.common import Source, router_optim
from occiforge.experts.moe import assemble, language_row_weights
from occiforge.io import iter_texts
from occiforge.lm import load_causal_lm, load_config, load_tokenizer
from occiforge.recipe import MoeEntry


def text_windows(ctx: Context, tok: Any, lang: str, split: str, tokens: int) -> router.Windows:
    stream = router.token_stream(tok, iter_texts(ctx.stage_dir("data"), lang, split), tokens)
    return router.windows(stream, ctx.recipe.train.seq_len)


def check_calibration(ctx: Context, what: str, experts: list[Source], langs: list[str]) -> None:
    """Every expert's language has training text to calibrate on: else one line naming the experts."""
    for lang in dict.fromkeys(langs):
        if next(iter(iter_texts(ctx.stage_dir("data"), lang, "train")), None) is None:
            names = ", ".join(e.name for e, lang_e in zip(experts, langs) if lang_e == lang)
            raise UserError(f"{what}: calibration language {lang!r} (expert {names}) has no training text in "
                            f"{ctx.stage_dir('data') / lang}")


def _streams(ctx: Context, tok: Any, langs: list[str], tokens: int) -> list[Any]:
    """One training-text token stream per expert (experts of one language share it)."""
    by_lang = {lang: router.token_stream(tok, iter_texts(ctx.stage_dir("data"), lang, "train"), tokens) for lang in dict.fromkeys(langs)}
    if short := [lang for lang, s in by_lang.items() if len(s) <= ctx.recipe.train.seq_len + 1]:
        raise UserError(f"moe: languages {short} have less training text than one window of {ctx.recipe.train.seq_len + 1} tokens")
    return [by_lang[lang] for lang in langs]


def _train(ctx: Context, model: Any, entry: MoeEntry, experts: list[Source], streams: list[Any], ckpt: Path,
           fp: str) -> list[dict[str, Any]]:
    """The brief training, through the one training loop: routers only or the whole mixture."""
    from occiforge.experts.objective import MixtureObjective
    from occiforge.loop import LoopSpec, train

    r, rc = ctx.recipe, entry.router
    teachers = [load_causal_lm(e.path) for e in experts] if rc.distill else None
    objective = MixtureObjective(model, teachers, rc.language_loss)
    objective.to_teachers(ctx.dist.device)
    router.freeze_for(model, rc.train)
    model.config.use_cache = False
    spec = LoopSpec(steps=rc.steps, lr=rc.lr, optim=router_optim(r, entry),
                    grad_accum=1, precision=r.train.precision, save_every=r.train.save_every,
                    log_every=max(1, min(r.train.log_every, rc.steps // 10)), fingerprint=fp)
    batches = router.mixed_batches(streams, rc.batch_size or r.train.batch_size, r.train.seq_len, r.seed)
    history = train(objective, batches, spec, ckpt, log=lambda msg: ctx.log(f"  moe: {msg}"))
    for p in model.parameters():
        p.requires_grad_(True)
    return history


def build_mixture(ctx: Context, name: str, entry: MoeEntry, experts: list[Source], base: Source | None,
                  langs: list[str], fp: str) -> dict[str, Any]:
    """Write `moe/<name>/`; returns what its manifest records (routing shares, training)."""
    r, rc = ctx.recipe, entry.router
    if r.train.threads:
        torch.set_num_threads(r.train.threads)
    what, folder = f"moe {name!r}", ctx.stage_dir("moe") / name
    ckpt = folder.with_name(f".{name}.ckpt")
    tok = load_tokenizer(experts[0].path)
    analysis_langs = entry.analysis_languages or list(dict.fromkeys(langs))
    info: dict[str, Any] = {"experts": [e.name for e in experts], "languages": langs, "top_k": entry.top_k, "shared": entry.shared}
    rc_tokens = 4 * rc.steps * (rc.batch_size or r.train.batch_size) * (r.train.seq_len + 1) if rc.train != "none" else 0
    streams = _streams(ctx, tok, langs, max(rc.calibration_tokens, rc_tokens))
    weights = None
    if entry.embeddings == "by_language":
        vocab = load_config(experts[0].path).vocab_size
        counts = torch.stack([torch.bincount(torch.from_numpy(s[: rc.calibration_tokens]), minlength=vocab) for s in streams])
        weights = language_row_weights(counts)
    with artifacts.staged_dir(folder) as tmp:
        raw = tmp / ".assembled"
        assemble([e.path for e in experts], raw, entry.top_k, entry.shared, base.path if base else None, weights, what)
        model = load_causal_lm(raw).to(ctx.dist.device)
        if rc.init == "language":
            router.init_language_routers(model, [router.windows(s[: rc.calibration_tokens], r.train.seq_len) for s in streams],
                                         rc.scale)
        else:
            torch.manual_seed(r.seed)
            for block in model.model.layers:
                torch.nn.init.normal_(block.mlp.gate.weight, std=model.config.initializer_range)
        if rc.train != "none":
            history = _train(ctx, model, entry, experts, streams, ckpt, fp)
            artifacts.write_json_atomic(tmp / "train_log.json", history)
            tokens = rc.steps * (rc.batch_size or r.train.batch_size) * r.train.seq_len
            seen = [e.record.tokens_seen for e in experts if e.record and e.record.tokens_seen]
            info.update(train=rc.train, train_steps=rc.steps, train_tokens=tokens, final_loss=history[-1]["loss"] if history else None,
                        train_share_of_expert=round(tokens / min(seen), 4) if seen else None)
        model.eval()
        held = {lang: text_windows(ctx, tok, lang, "heldout", rc.calibration_tokens) for lang in analysis_langs}
        info["routing"] = router.routing_shares(model, {lang: w for lang, w in held.items() if w})
        model.config.use_cache = True
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        shutil.rmtree(raw)
    shutil.rmtree(ckpt, ignore_errors=True)
    return info
