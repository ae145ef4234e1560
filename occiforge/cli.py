"""Command line: `occiforge run RECIPE` or one stage, `occiforge <stage> -c RECIPE`.

The CLI only selects stages and overrides recipe fields (`--set a.b=value`); every knob is a
recipe field. User errors print one line and exit 2; Ctrl-C exits 130 and a rerun resumes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from occiforge import __version__
from occiforge.errors import UserError

EXIT_USER_ERROR = 2


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field, e.g. --set train.steps=50 (repeatable; VALUE is YAML)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-stage chatter (CI logs)")


def build_parser() -> argparse.ArgumentParser:
    from occiforge.runner import STAGES

    parser = argparse.ArgumentParser(prog="occiforge", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"occiforge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the whole stage graph of a recipe (skips finished stages)")
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("--from", dest="start", choices=STAGES, help="first stage to run")
    p.add_argument("--to", dest="stop", choices=STAGES, help="last stage to run")
    p.add_argument("--force", action="append", default=[], choices=STAGES, help="rerun this stage even if up to date")
    _common(p)

    for stage in STAGES:
        p = sub.add_parser(stage, help=f"run only the '{stage}' stage of a recipe")
        p.add_argument("-c", "--config", dest="recipe", help="recipe YAML file")
        p.add_argument("--force", action="store_true", help="rerun even if up to date")
        _common(p)
        if tools := _stage_tools(stage):
            tools.add_arguments(p)

    p = sub.add_parser("validate", help="load and validate a recipe, print it resolved")
    p.add_argument("recipe")
    _common(p)
    sub.add_parser("languages", help="list the language table")
    return parser


def _stage_tools(stage: str) -> Any:
    """A stage's stand-alone tools (e.g. `occiforge tokenizer report`), if it has any.

    `occiforge/<stage>/commands.py` provides `add_arguments(parser)` and `dispatch(args)`, which
    returns an exit code when it handled the command, or None to run the recipe stage.
    """
    try:
        return importlib.import_module(f"occiforge.{stage}.commands")
    except ModuleNotFoundError as e:
        if e.name not in (f"occiforge.{stage}", f"occiforge.{stage}.commands"):
            raise
        return None


def _dispatch(args: argparse.Namespace) -> int:
    from occiforge import runner
    from occiforge.recipe import dump_recipe, load_recipe

    if args.command == "languages":
        from occiforge import languages

        for code in languages.all_codes():
            lang = languages.get(code)
            print(f"{code}\t{lang.flores}\t{lang.name}\t{lang.native}")
        return 0
    if args.command in runner.STAGES and (tools := _stage_tools(args.command)):
        code = tools.dispatch(args)
        if code is not None:
            return int(code)
    if args.recipe is None:
        raise UserError(f"{args.command}: give a recipe with -c RECIPE (see occiforge {args.command} --help)")
    recipe = load_recipe(args.recipe, args.overrides)
    if args.command == "validate":
        print(dump_recipe(recipe), end="")
        return 0
    from occiforge.train import distributed

    ctx = runner.Context(recipe=recipe, quiet=args.quiet, dist=distributed.init())
    if args.command == "run":
        runner.run(ctx, runner.select(args.start, args.stop), force=args.force)
    else:
        runner.run(ctx, [args.command], force=[args.command] if args.force else [])
    return 0


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from loguru import logger  # datatrove's logger

        logger.remove()
        logger.add(sys.stderr, level="WARNING")
    except ImportError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        return _dispatch(args)
    except UserError as e:
        print(f"occiforge: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("occiforge: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
