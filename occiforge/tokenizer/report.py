"""Tokenizer reports: the `occiforge tokenizer report` JSON and charts, and the run-report section.

`occiforge tokenizer report --output report.json` writes

    {"tokenizers": {"<name>": {"<lang>": {"tokens": int, "bytes_per_token": float,
                                          "fertility": float, "continued_words": float,
                                          "parity": float}}},
     "mono": {"<name>": {"<lang>": {... the same without parity ...}}},   # with --mono only
     "languages": [...], "parallel": "<dir>", "mono_dir": "<dir>" | null}

and one bar chart per metric beside it (`report.<metric>.png`: languages on the x axis, one
bar per tokenizer). The tokenizer stage writes `tokenizer/report.json` as
`{"<lang>": {"tokens", "bytes_per_token", "fertility", "continued_words", "tokens_per_word"
[, "parity"]}}`, measured on the curated held-out text (parity on `tokenizer.parallel`),
plus `fertility.png` / `parity.png`; `report_section(stage_dir)` renders all of it, with the
extension and parity-balancing records where present, as HTML for the run report.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from occiforge.lm import read_extension
from occiforge.tokenizer.encoders import load_encoder
from occiforge.tokenizer.metrics import METRICS, measure_parallel, measure_texts, prepare, read_mono, read_parallel
from occiforge.viz import grouped_bars, image_tag, table_html

REPORT_FILE = "report.json"
BALANCE_FILE = "balance.json"  # the parity-balancing rounds, when balance_by is parity
LABELS = {
    "tokens": "tokens", "bytes_per_token": "bytes per token (higher is better)",
    "fertility": "tokens per word (lower is better)", "continued_words": "share of words split (lower is better)",
    "parity": "tokens relative to English (lower is better)", "tokens_per_word": "tokens per whitespace word",
}


def build_report(specs: list[str], parallel: str | Path, mono: str | Path | None = None,
                 langs: list[str] | None = None, mono_max_bytes: int = 1_000_000) -> dict[str, Any]:
    """Measure every tokenizer on the parallel folder (and monolingual text, if given)."""
    texts = prepare(read_parallel(parallel, langs))
    mono_texts = prepare(read_mono(mono, langs, mono_max_bytes)) if mono else None
    encoders = [load_encoder(spec) for spec in specs]
    names: list[str] = []
    for enc in encoders:  # two tokenizers with one display name: number them
        base, n = enc.name, 2
        while enc.name in names:
            enc.name, n = f"{base}-{n}", n + 1
        names.append(enc.name)
    out: dict[str, Any] = {"tokenizers": {enc.name: measure_parallel(enc, texts) for enc in encoders}}
    if mono_texts is not None:
        out["mono"] = {enc.name: measure_texts(enc, mono_texts) for enc in encoders}
    out.update(languages=sorted(texts), parallel=str(parallel), mono_dir=str(mono) if mono else None)
    return out


def _metric_table(rows: dict[str, dict[str, dict[str, Any]]], metric: str) -> dict[str, dict[str, float]]:
    return {name: {lang: r[metric] for lang, r in per_lang.items() if metric in r} for name, per_lang in rows.items()}


def write_report(result: dict[str, Any], output: str | Path) -> list[Path]:
    """The JSON at `output` and one chart per metric beside it; returns the written paths."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    written = [output]
    for metric in METRICS:
        path = output.with_name(f"{output.stem}.{metric}.png")
        grouped_bars(_metric_table(result["tokenizers"], metric), result["languages"], LABELS[metric], path)
        written.append(path)
    return written


def write_stage_plots(folder: Path, report: dict[str, dict[str, Any]]) -> None:
    """fertility.png (before/after when extended) and parity.png (with a parallel dev set)."""
    langs = sorted(report)
    table = {"tokenizer": {lang: row["fertility"] for lang, row in report.items() if "fertility" in row}}
    if (ext := read_extension(folder)) is not None:
        table = {"base": ext["fertility_before"], "extended": table["tokenizer"]}
    grouped_bars(table, langs, LABELS["fertility"], folder / "fertility.png")
    if any("parity" in row for row in report.values()):
        grouped_bars({"tokenizer": _metric_table({"t": report}, "parity")["t"]}, langs, LABELS["parity"], folder / "parity.png")


def report_section(stage_dir: str | Path) -> str:
    """HTML for the run report from a tokenizer stage folder (`runs/<name>/tokenizer`)."""
    stage_dir = Path(stage_dir)
    report = json.loads((stage_dir / REPORT_FILE).read_text(encoding="utf-8"))
    cols = [c for c in ("fertility", "continued_words", "bytes_per_token", "parity", "tokens") if any(c in r for r in report.values())]
    parts = ["<h2>Tokenizer</h2>", "<p>Measured on held-out text (parity on the parallel dev set): tokens per word "
             "(UD-style words), share of words split into several tokens, bytes per token, tokens relative to English.</p>",
             table_html(report, cols, spaced_headers=True), image_tag(stage_dir / "fertility.png", "fertility per language"),
             image_tag(stage_dir / "parity.png", "parity per language")]
    if (ext := read_extension(stage_dir)) is not None:
        rule = f"fertility above {ext['threshold']}" if ext["rule"] == "auto" else "listed in the recipe"
        rows = {lang: {"before": f, "after": report.get(lang, {}).get("fertility", "")} for lang, f in ext["fertility_before"].items()}
        parts += [f"<h3>Extension</h3><p>{html.escape(str(ext['base']))}: {ext['new_tokens']} new tokens (ids "
                  f"{ext['base_vocab_size']} and up) for {html.escape(', '.join(ext['languages']) or 'no language')} "
                  f"({rule}).</p>",
                  table_html(rows, ["before", "after"], spaced_headers=True)]
    if (bal_file := stage_dir / BALANCE_FILE).is_file():
        rounds = {f"round {h['round']}": {"worst": h["worst"], "worst parity": h["worst_parity"], "accepted": str(h["accepted"])}
                  for h in json.loads(bal_file.read_text(encoding="utf-8"))}
        parts += ["<h3>Parity balancing</h3>", table_html(rounds, ["worst", "worst parity", "accepted"], spaced_headers=True)]
    return "\n".join(p for p in parts if p)

