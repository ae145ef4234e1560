"""The tokenizer stage: train on curated data, adopt a pretrained tokenizer, or extend one.

Writes to `tokenizer/`: the HF tokenizer files, `report.json` (see `occiforge.tokenizer.report`
for its shape), bar charts, `section.html` (its part of the run report), and where they apply
`balance.json` (the parity-balancing rounds) and `extension.json` (facts about what
`tokenizer.extend` added; the train stage reads it to grow and initialise a model's embeddings,
with the init each model names).

The heavy modules (transformers, tokenizers, matplotlib) are imported inside `run`, so the
stage registry stays cheap to load.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from occiforge import artifacts
from occiforge.context import Context, Stage
from occiforge.errors import UserError
from occiforge.io import iter_texts
from occiforge.lm import EXTENSION_FILE, check_available, load_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast


MEASURE_BYTES = 2_000_000  # held-out text per language for the report (and the extension rule)


def _parallel_signature(folder: str | None) -> Any:
    if not folder or not Path(folder).is_dir():
        return folder
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in sorted(Path(folder).glob("*.txt"))}


def fingerprint(ctx: Context) -> str:
    cfg = ctx.recipe.tokenizer
    return artifacts.fingerprint("tokenizer/3", cfg.model_dump(mode="json"), ctx.recipe.languages, ctx.fingerprint("data"),
                                 _parallel_signature(cfg.parallel))


def measure(tok: PreTrainedTokenizerFast, texts: list[str], lang: str = "und") -> dict[str, float]:
    """Tokens, bytes per token, fertility, continued words and whitespace tokens per word."""
    from occiforge.tokenizer.encoders import HFEncoder
    from occiforge.tokenizer.metrics import count

    if not texts:
        return {}
    row = count(HFEncoder("stage", tok.backend_tokenizer), texts, lang).row()
    row["tokens_per_word"] = round(row["tokens"] / max(sum(len(t.split()) for t in texts), 1), 4)
    return row


def _measure_all(tok: PreTrainedTokenizerFast, heldout: dict[str, list[str]], dev: dict[str, list[str]] | None) -> dict[str, Any]:
    from occiforge.tokenizer.encoders import HFEncoder
    from occiforge.tokenizer.metrics import measure_parallel

    report = {lang: measure(tok, docs, lang) for lang, docs in heldout.items()}
    if dev:
        parity = measure_parallel(HFEncoder("stage", tok.backend_tokenizer), dev)
        for lang in report:
            if lang in dev and report[lang]:
                report[lang]["parity"] = parity[lang]["parity"]
    return report


def _dev_set(cfg: Any, langs: list[str]) -> dict[str, list[str]] | None:
    from occiforge.tokenizer.metrics import read_parallel

    if not cfg.parallel:
        return None
    dev = read_parallel(cfg.parallel)
    return {lang: lines for lang, lines in dev.items() if lang in langs or lang == "en"}


def _train(ctx: Context, cfg: Any, texts: dict[str, list[str]], dev: dict[str, list[str]] | None, tmp: Path) -> PreTrainedTokenizerFast:
    from occiforge.tokenizer.balance import train_parity_balanced
    from occiforge.tokenizer.report import BALANCE_FILE
    from occiforge.tokenizer.train import sample_texts, save_hf, train_tokenizer

    with ctx.status(f"tokenizer: training {cfg.kind} ({cfg.vocab_size} tokens, balanced by {cfg.balance_by})…"):
        if cfg.balance_by == "parity":
            assert dev is not None  # the recipe requires tokenizer.parallel
            raw, history = train_parity_balanced(texts, cfg, dev, log=ctx.log)
            artifacts.write_json_atomic(tmp / BALANCE_FILE, history)
        else:
            raw = train_tokenizer(sample_texts(texts, cfg), cfg)
    return save_hf(raw, tmp)


def _extend(ctx: Context, base: PreTrainedTokenizerFast, heldout: dict[str, list[str]], tmp: Path) -> PreTrainedTokenizerFast:
    """Apply tokenizer.extend to `base`, save the result in `tmp` and record what was added."""
    from occiforge.tokenizer.extend import extend

    cfg, langs = ctx.recipe.tokenizer, ctx.recipe.languages
    ext_cfg = cfg.extend
    data_dir = ctx.stage_dir("data")
    sample = {lang: docs or _capped(iter_texts(data_dir, lang, "train"), MEASURE_BYTES) for lang, docs in heldout.items()}
    before = {lang: measure(base, docs, lang).get("fertility", 0.0) for lang, docs in sample.items()}
    if ext_cfg.languages == "auto":
        targets = [lang for lang in langs if before.get(lang, 0.0) > ext_cfg.threshold]
    else:
        if stray := [lang for lang in ext_cfg.languages if lang not in langs]:
            raise UserError(f"tokenizer.extend.languages: {stray[0]!r} is not in 'languages' (its data is not curated)")
        targets = list(ext_cfg.languages)
    budget = cfg.max_bytes // max(len(targets), 1)
    texts = {lang: _capped(iter_texts(data_dir, lang, "train"), budget) for lang in targets}
    base.save_pretrained(str(tmp), legacy_format=False)  # no slow-tokenizer files: they would describe the old vocabulary
    added: list[dict[str, Any]] = []
    if targets:
        with ctx.status(f"tokenizer: extending for {', '.join(targets)} ({ext_cfg.new_tokens} new tokens)…"):
            new, ext = extend(base.backend_tokenizer, texts, ext_cfg.new_tokens, ext_cfg.min_frequency)
        new.save(str(tmp / "tokenizer.json"))
        added = ext.added
    record = {"base": cfg.pretrained, "base_vocab_size": len(base), "rule": "auto" if ext_cfg.languages == "auto" else "list",
              "threshold": ext_cfg.threshold, "languages": targets,
              "fertility_before": before, "new_tokens": len(added), "added": added}
    artifacts.write_json_atomic(tmp / EXTENSION_FILE, record)
    ctx.log(f"  extension: {len(added)} new tokens for {', '.join(targets) or 'no language'}")
    return load_tokenizer(str(tmp))


def _capped(texts: Any, budget: int) -> list[str]:
    out, size = [], 0
    for text in texts:
        if size >= budget:
            break
        out.append(text)
        size += len(text.encode())
    return out


def run(ctx: Context, fp: str) -> dict[str, Any]:
    from occiforge.tokenizer.report import REPORT_FILE, report_section, write_stage_plots

    cfg, langs = ctx.recipe.tokenizer, ctx.recipe.languages
    data_dir = ctx.stage_dir("data")
    dev = _dev_set(cfg, langs)
    heldout = {lang: _capped(iter_texts(data_dir, lang, "heldout"), MEASURE_BYTES) for lang in langs}
    with artifacts.staged_dir(ctx.stage_dir("tokenizer")) as tmp:
        if cfg.pretrained:
            tok = load_tokenizer(cfg.pretrained)
            if cfg.extend is not None:
                tok = _extend(ctx, tok, heldout, tmp)
            else:
                tok.save_pretrained(str(tmp))
        else:
            texts = {lang: list(iter_texts(data_dir, lang, "train")) for lang in cfg.languages or langs}
            tok = _train(ctx, cfg, texts, dev, tmp)
        report = _measure_all(tok, heldout, dev)
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2))
        write_stage_plots(tmp, report)
        (tmp / artifacts.SECTION).write_text(report_section(tmp), encoding="utf-8")
    for lang, row in report.items():
        extra = f", parity {row['parity']}" if "parity" in row else ""
        ctx.log(f"  {lang}: {row.get('bytes_per_token', '-')} bytes/token, fertility {row.get('fertility', '-')}{extra}")
    return {"vocab_size": len(tok), "per_language": report}


def preflight(ctx: Context) -> None:
    if pretrained := ctx.recipe.tokenizer.pretrained:
        check_available(pretrained, "tokenizer.pretrained")


STAGE = Stage(name="tokenizer", folder="tokenizer", reads=("data",), fingerprint=fingerprint, run=run, preflight=preflight)
