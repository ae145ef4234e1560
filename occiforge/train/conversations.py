"""The conversations stage: the instruction data of `kind: sft` models, tokenized once.

For every chat template the recipe's sft models use it writes the run's tokenizer with that
template (`conversations/tokenizer-<template>/`), and for every conversation source
`conversations/<key>/<lang>/{train,heldout}/` token folders (`occiforge.io.write_token_docs`):
ids, conversation offsets, and a target mask that is 1 on assistant tokens only. The train stage
packs these; it never tokenizes text itself. Bad conversations (no assistant turn, unknown
roles) stop the stage with one line naming the model and the record, before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from occiforge import artifacts
from occiforge.chat import encode, iter_records, source_file, to_messages, with_template
from occiforge.context import Context, Stage
from occiforge.errors import UserError
from occiforge.io import write_token_docs
from occiforge.lm import check_hub_dataset, load_tokenizer
from occiforge.recipe import ChatSource, PlannedModel, Recipe

VERSION = "conversations/1"
HELDOUT_MESSAGES = "heldout.json"  # the held-out conversations as messages: prompts for sample answers


def source_key(src: ChatSource, template: str) -> str:
    """The folder of one source's tokens under one template (weights do not change tokens)."""
    return artifacts.fingerprint(VERSION, src.model_dump(mode="json", exclude={"weight", "languages"}), template)[:12]


def sft_models(r: Recipe) -> list[PlannedModel]:
    return [pm for pm in r.plan() if pm.kind == "sft"]


def work(r: Recipe) -> dict[str, tuple[ChatSource, str, set[str], str]]:
    """key -> (source, template, languages, the first model that uses it), over every sft model."""
    out: dict[str, tuple[ChatSource, str, set[str], str]] = {}
    for pm in sft_models(r):
        for src in pm.chat or []:
            key = source_key(src, pm.chat_template or "chatml")
            langs = out[key][2] | set(src.languages) if key in out else set(src.languages)
            out[key] = (src, pm.chat_template or "chatml", langs, out[key][3] if key in out else pm.name)
    return out


def _input_signature(src: ChatSource, langs: set[str]) -> list[Any]:
    """Size and mtime of each local input file (as the data stage does): an edited file is new input.
    A hub dataset is known by its name only (`--force conversations` after it changes)."""
    if src.path.startswith("hf:"):
        local = Path(src.path[3:])
        files = sorted(f for f in local.rglob("*") if f.is_file()) if local.is_dir() else []
    else:
        files = [f for f in (source_file(src.path, lang) for lang in sorted(langs)) if f.is_file()]
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def fingerprint(ctx: Context) -> str:
    jobs = {key: [sorted(langs), _input_signature(src, langs)] for key, (src, _, langs, _) in work(ctx.recipe).items()}
    return artifacts.fingerprint(VERSION, ctx.fingerprint("tokenizer"), jobs)


def _encode_language(tok: Any, src: ChatSource, lang: str, model: str) -> tuple[list[Any], list[Any]]:
    """(messages, ids, target mask) of every conversation, split into train and the last `heldout`."""
    convs = []
    try:
        for where, rec in iter_records(src.path, lang, src.split, src.lang_key, single=len(src.languages) == 1):
            messages = to_messages(rec, src.messages_key, where)
            convs.append((messages, *encode(tok, messages, where)))
    except UserError as e:  # a source's problem, said with the model that reads it
        raise UserError(f"models.{model}: {e}") from None
    if len(convs) <= src.heldout:
        raise UserError(f"models.{model}: {src.path} has {len(convs)} conversations in {lang}, "
                        f"not more than heldout={src.heldout}")
    cut = len(convs) - src.heldout
    return convs[:cut], convs[cut:]


def run(ctx: Context, fp: str) -> dict[str, Any]:
    import numpy as np

    base = load_tokenizer(ctx.stage_dir("tokenizer"))
    jobs = work(ctx.recipe)
    toks: dict[str, Any] = {}
    for _, template, _, model in jobs.values():
        if template not in toks:
            path = ctx.stage_dir("tokenizer")
            toks[template] = with_template(load_tokenizer(path), template, f"models.{model}: the run's tokenizer ({path})")
    out: dict[str, Any] = {"base_vocab_size": len(base), "tokenizers": {t: f"tokenizer-{t}" for t in toks}, "sources": {}}
    with artifacts.staged_dir(ctx.stage_dir("conversations")) as tmp:
        for template, tok in toks.items():
            tok.save_pretrained(str(tmp / f"tokenizer-{template}"))
        for key, (src, template, langs, model) in jobs.items():
            tok = toks[template]
            dtype = np.uint16 if len(tok) <= np.iinfo(np.uint16).max else np.uint32
            per_lang = {}
            for lang in sorted(langs):
                splits = _encode_language(tok, src, lang, model)
                counts = {}
                for split, convs in zip(("train", "heldout"), splits):
                    meta = write_token_docs(tmp / key / lang / split, [c[1] for c in convs], dtype, [c[2] for c in convs])
                    counts[split] = {"conversations": meta["documents"], "tokens": meta["tokens"],
                                     "targets": int(sum(sum(c[2]) for c in convs))}
                artifacts.write_json_atomic(tmp / key / lang / HELDOUT_MESSAGES, [c[0] for c in splits[1]])
                per_lang[lang] = counts
                ctx.log(f"  {src.path} {lang}: {counts['train']['conversations']} conversations, "
                        f"{counts['train']['targets']:,} assistant tokens")
            out["sources"][key] = {"path": src.path, "template": template, "per_language": per_lang}
    return out


def preflight(ctx: Context) -> None:
    """Every conversation source is there (its files, or its hub dataset) before any stage runs."""
    for _, (src, _, langs, model) in work(ctx.recipe).items():
        if src.path.startswith("hf:"):
            check_hub_dataset(src.path[3:], f"models.{model}.data")
            continue
        for file in (source_file(src.path, lang) for lang in sorted(langs)):
            if not file.is_file():
                raise UserError(f"models.{model}.data: {src.path}: no {file.name} in {file.parent}")


STAGE = Stage(name="conversations", folder="conversations", reads=("tokenizer",), fingerprint=fingerprint, run=run,
              enabled=lambda r: bool(sft_models(r)), enabled_by="models.<key>.kind: sft", preflight=preflight)
