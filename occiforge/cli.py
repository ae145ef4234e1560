"""Command line: `occiforge run RECIPE` or one stage, `occiforge <stage> -c RECIPE`.

The CLI only selects stages and overrides recipe fields (`--set a.b=value`); every knob is a
recipe field. User errors print one line and exit 2; Ctrl-C exits 130 and a rerun resumes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from occiforge import __version__, dist, hostmem
from occiforge.errors import Stopped, UserError

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit 2 like every other user error."""

    commands: dict[str, argparse.ArgumentParser] = {}  # the top parser's subcommands, by name

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("occiforge").strip()  # the subcommand; none for the top parser
        self.exit(EXIT_USER_ERROR, f"occiforge: error: {where + ': ' if where else ''}{message} (see {self.prog} --help)\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        """As argparse, but an unknown flag is reported by the subcommand it was given to (its --help lists them)."""
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            given, command = list(sys.argv[1:] if args is None else args), getattr(parsed, "command", None)
            after = command in given and extra[0] in given[given.index(command) + 1 :]
            (self.commands[command] if after else self).error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field, e.g. --set train.steps=50 (repeatable; VALUE is YAML)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-stage chatter (CI logs)")


def build_parser() -> argparse.ArgumentParser:
    from occiforge.registry import stages

    names = list(stages())
    parser = _Parser(prog="occiforge", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"occiforge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.commands = sub.choices

    p = sub.add_parser("run", help="run the whole stage graph of a recipe (skips finished stages)")
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("--from", dest="start", choices=names, help="first stage to run")
    p.add_argument("--to", dest="stop", choices=names, help="last stage to run")
    p.add_argument("--force", action="append", default=[], choices=names, help="rerun this stage and all its per-model work, even if up to date")
    _common(p)

    for stage in names:
        p = sub.add_parser(stage, help=f"run only the '{stage}' stage of a recipe")
        p.add_argument("-c", "--config", dest="recipe", help="recipe YAML file")
        p.add_argument("--force", action="store_true", help="rerun even if up to date")
        _common(p)
        if tools := _stage_tools(stage):
            tools.add_arguments(p)

    p = sub.add_parser("validate", help="load and validate a recipe, print it resolved")
    p.add_argument("recipe")
    _common(p)
    p = sub.add_parser("plan", help="tokens, parameters, FLOPs, GPU hours and memory per GPU of a recipe's models")
    from occiforge.train import plan

    plan.add_arguments(p)
    _common(p)
    sub.add_parser("languages", help="list the language table")
    p = sub.add_parser("chat", help="talk to a saved model in the terminal through its chat template")
    p.add_argument("--model", required=True, help="a model folder (e.g. runs/demo/models/instruct) or hub id")
    p.add_argument("--max-new-tokens", type=_positive_int, default=128, help="at most this many tokens per answer")
    p.add_argument("--system", help="a system message that starts the conversation")
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
    from occiforge.registry import stages

    if args.command == "languages":
        from occiforge import languages

        for code in languages.all_codes():
            lang = languages.get(code)
            print(f"{code}\t{lang.flores}\t{lang.name}\t{lang.native}")
        return 0
    if args.command == "plan":
        from occiforge.train import plan

        return plan.run(args)
    if args.command == "chat":
        from occiforge.chat import repl

        return repl(args.model, args.max_new_tokens, args.system)
    if args.command in stages() and (tools := _stage_tools(args.command)):
        code = tools.dispatch(args)
        if code is not None:
            return int(code)
    if args.recipe is None:
        raise UserError(f"{args.command}: give a recipe with -c RECIPE (see occiforge {args.command} --help)")
    recipe = load_recipe(args.recipe, args.overrides)
    if args.command == "validate":
        ctx = runner.make_context(recipe)
        runner.check_enabled(ctx, ctx.stages)
        print(dump_recipe(recipe), end="")
        return 0
    info = dist.init(recipe.train.dist_timeout_minutes)
    if args.command == "run":
        ctx = runner.make_context(recipe, args.quiet, args.force, info)
        runner.run(ctx, runner.select(ctx.stages, args.start, args.stop))
    else:
        ctx = runner.make_context(recipe, args.quiet, [args.command] if args.force else [], info)
        runner.run(ctx, [args.command])
    return 0


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # the variables above are read at import: a host that imported these libraries first (a notebook,
    # a test session) would still get their bars and warnings on stderr, so quiet them directly too
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.set_verbosity_error()
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    try:
        from loguru import logger  # datatrove's logger

        logger.remove()
        logger.add(sys.stderr, level="WARNING")
    except ImportError:
        pass


ONE_SHOT = {"validate", "plan", "languages", "chat"}  # commands with nothing to resume


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    hostmem.keep_freed_memory()
    try:
        code = _dispatch(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        dist.finish()
        return code
    except UserError as e:
        print(f"occiforge: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Stopped as e:  # a signal during training: a checkpoint was written (the same line on every rank)
        if dist.env_rank() == 0:
            print(f"occiforge: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        again = "; run the same command again to resume" if args.command not in ONE_SHOT else ""
        print(f"occiforge: interrupted{again}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `occiforge plan ... | head`: the reader left; nothing to say, and no traceback at exit
        if not _reader_gone():
            raise  # a broken pipe elsewhere is a real error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process ended by SIGPIPE


def _reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end is closed (poll reports an error on it)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLERR)
        return bool(poll.poll(0))
    except (OSError, ValueError, AttributeError):  # no fileno, or no poll on this platform
        return False


if __name__ == "__main__":
    sys.exit(main())
