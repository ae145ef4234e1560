"""`occiforge tokenizer report`: measure tokenizers per language without a recipe.

    occiforge tokenizer report --tokenizer tiktoken:cl100k_base --tokenizer runs/demo/tokenizer \\
        --parallel ../shared/data/parallel/udhr [--mono ../shared/data/mono] --output tok/report.json

`occiforge tokenizer -c RECIPE` (no action) still runs the recipe's tokenizer stage.
"""

from __future__ import annotations

import argparse
import time

from occiforge.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=False, metavar="ACTION")
    p = sub.add_parser("report", help="fertility, parity, bytes per token and continued words per language")
    p.add_argument("--tokenizer", dest="tokenizers", action="append", required=True, metavar="T",
                   help="tokenizer.json, HF folder, hub id or tiktoken:<encoding>; NAME=T names it (repeatable)")
    p.add_argument("--parallel", required=True, metavar="DIR", help="folder of line-aligned <lang>.txt files, en.txt included")
    p.add_argument("--mono", metavar="DIR", help="folder of <lang>.jsonl/.txt: fertility etc. on monolingual text too")
    p.add_argument("--mono-max-bytes", type=int, default=1_000_000, metavar="N", help="monolingual text read per language")
    p.add_argument("--languages", metavar="L1,L2", help="only these languages (English is always measured)")
    p.add_argument("--output", required=True, metavar="FILE", help="report JSON; charts are written beside it")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="print nothing but errors")


def _print_summary(result: dict, seconds: float) -> None:
    names = list(result["tokenizers"])
    print(f"{'lang':<6}" + "".join(f"{n[:22]:>24}" for n in names))
    print(f"{'':<6}" + "".join(f"{'fertility / parity':>24}" for _ in names))
    for lang in result["languages"]:
        cells = [result["tokenizers"][n][lang] for n in names]
        print(f"{lang:<6}" + "".join(f"{c['fertility']:>15.2f} / {c['parity']:>5.2f}" for c in cells))
    print(f"{len(names)} tokenizers x {len(result['languages'])} languages in {seconds:.1f}s")


def dispatch(args: argparse.Namespace) -> int | None:
    if getattr(args, "action", None) != "report":
        return None
    from occiforge.tokenizer.report import build_report, write_report

    langs = [x.strip() for x in args.languages.split(",") if x.strip()] if args.languages else None
    if langs:
        from occiforge import languages

        for code in langs:
            languages.get(code)  # a UserError naming an unknown code
    if args.mono_max_bytes < 1:
        raise UserError("--mono-max-bytes: must be at least 1")
    t0 = time.perf_counter()
    result = build_report(args.tokenizers, args.parallel, args.mono, langs, args.mono_max_bytes)
    written = write_report(result, args.output)
    if not getattr(args, "quiet", False):
        _print_summary(result, time.perf_counter() - t0)
        print(f"wrote {written[0]} and {len(written) - 1} charts")
    return 0
