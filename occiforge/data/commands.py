"""`occiforge data stats -c RECIPE`: the curated data per language, from a finished data stage.

Documents, characters and tokens kept (tokens when the tokens stage has run), documents dropped
per reason, and bad input per file. `occiforge data -c RECIPE` (no action) runs the stage.
"""

from __future__ import annotations

import argparse
import json

from occiforge.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=False, metavar="ACTION")
    p = sub.add_parser("stats", help="per-language table of documents, characters and tokens kept and dropped by reason")
    p.add_argument("-c", "--config", dest="recipe", required=True, help="recipe YAML file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a recipe field")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")


def dispatch(args: argparse.Namespace) -> int | None:
    if getattr(args, "action", None) != "stats":
        return None
    from occiforge import artifacts
    from occiforge.data.stats import format_table
    from occiforge.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    data = recipe.run_path / "data"
    if not (data / "stats.json").is_file():
        raise UserError(f"data stats: no finished data stage in {data}; run `occiforge data -c {args.recipe}` first")
    stats = json.loads((data / "stats.json").read_text())
    bad = json.loads((data / "bad_input.json").read_text()) if (data / "bad_input.json").is_file() else {}
    tokens = (artifacts.read_manifest(recipe.run_path / "tokens") or {}).get("per_language")
    if args.json:
        print(json.dumps({"languages": stats, "bad_input": bad, "tokens": tokens}, indent=1))
        return 0
    print(format_table(stats, tokens))
    for file, reasons in bad.items():
        print(f"bad input: {file}: " + ", ".join(f"{r} {n}" for r, n in reasons.items()))
    return 0
