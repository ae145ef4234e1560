"""`occiforge eval --model PATH ...`: score one model without a recipe; `--leaderboard` joins results.

    occiforge eval --model PATH [--bpb FILE.jsonl ...] [--mc FILE.jsonl|DIR|builtin:NAME ...]
                   [--gen FILE.jsonl ...] [--fewshot K] [--output results.json] [--export-lm-eval DIR]
    occiforge eval --leaderboard a.json b.json ... [--output board.md|board.json]
    torchrun --nproc_per_node N -m occiforge.cli eval --model PATH ...   # data-parallel

Language comes from each record's `lang` (or the `<lang>.jsonl` file name), the task name from
the file's folder. Without --model or --leaderboard the recipe's eval stage runs (`-c RECIPE`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from occiforge import artifacts
from occiforge.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("one-shot evaluation (no recipe)")
    g.add_argument("--model", help="HF model folder or hub id to score")
    g.add_argument("--bpb", action="extend", nargs="+", default=[], metavar="FILE", help="text JSONL ('text', 'lang'): bits per byte")
    g.add_argument("--mc", action="extend", nargs="+", default=[], metavar="SRC",
                   help="multiple-choice JSONL file, folder of <lang>.jsonl, or builtin:NAME (task = folder name)")
    g.add_argument("--gen", action="extend", nargs="+", default=[], metavar="FILE", help="translation JSONL ('source', 'target', 'lang'): chrF")
    g.add_argument("--fewshot", type=int, metavar="K",
                   help="examples per prompt (default: the template's reference, e.g. 25 for m_arc; 0 for other folders)")
    g.add_argument("--prompt-language", choices=["en", "native"], default="en", help="pose tasks with English or native prompt words")
    g.add_argument("--seed", type=int, default=1234, help="seed of the few-shot draws")
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--max-length", type=int, help="context length in tokens (default: the model's)")
    g.add_argument("--max-items", type=int, help="score at most this many items per task and language")
    g.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    g.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    g.add_argument("--no-prefix-sharing", action="store_true", help="score every choice as its own sequence, as lm-eval does")
    g.add_argument("--output", metavar="FILE", help="write results here (default: print them)")
    g.add_argument("--export-lm-eval", metavar="DIR", help="also write lm-eval task YAMLs posing the scored prompts")
    g.add_argument("--log-samples", metavar="FILE", help="per-item log-likelihoods as JSONL")
    g.add_argument("--leaderboard", nargs="+", metavar="RESULTS", help="join results files into a leaderboard")


def dispatch(args: argparse.Namespace) -> int | None:
    if args.leaderboard:
        return _leaderboard(args)
    if args.model is None:
        if args.bpb or args.mc or args.gen:
            raise UserError("--bpb, --mc and --gen score a model: give it with --model PATH")
        return None
    for flag in ("fewshot", "batch_size", "max_length", "max_items"):
        value = getattr(args, flag)
        if value is not None and value < (0 if flag == "fewshot" else 1):
            raise UserError(f"--{flag.replace('_', '-')}: {value} is out of range")
    if not (args.bpb or args.mc or args.gen):
        raise UserError("nothing to score: give --bpb, --mc or --gen files")
    from occiforge.eval.suite import finish_distributed, world

    try:
        results = evaluate(args)
        if world()[0] == 0:
            _emit(results, args.output)
    finally:
        finish_distributed()
    return 0


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Load everything first (so bad input fails before the model loads), then score."""
    from occiforge.eval import generate, suite
    from occiforge.eval.items import read_texts
    from occiforge.eval.scorer import Scorer, resolve_max_length
    from occiforge.eval.tasks import load_tasks

    texts: dict[str, list[str]] = {}
    for f in args.bpb:
        for lang, docs in read_texts(Path(f)).items():
            texts.setdefault(lang, []).extend(docs)
    tasks = [t for src in args.mc for t in load_tasks(src, shots=args.fewshot, max_items=args.max_items, prompt=args.prompt_language)]
    _check_unique(tasks)
    pairs = [p for f in args.gen for p in generate.read_pairs(Path(f))]
    posed = suite.pose_all(tasks, args.seed)
    suite.init_distributed()
    with _progress(args) as progress:
        overall = progress.add_task(f"{args.model}: loading", total=len(texts) + len(tasks) + bool(pairs))
        model, tok = suite.load(args.model, args.device, args.dtype)
        max_len = args.max_length or resolve_max_length(model.config, tok)
        out: dict[str, Any] = {"model": args.model, "bpb": {}, "mc": {}}
        for lang, docs in texts.items():  # one language at a time, so the bar moves
            progress.update(overall, description=f"{args.model}: bits per byte, {lang}")
            out["bpb"][lang] = round(suite.score_bpb(model, tok, {lang: docs}, max_len, args.batch_size)[lang]["bpb"], 6)
            progress.advance(overall)
        if tasks:
            scorer = Scorer(model, tok, max_length=max_len, batch_size=args.batch_size, prefix_sharing=not args.no_prefix_sharing)
            out["mc"], samples = _score_tasks(scorer, tasks, posed, progress, overall, args.model)
            _side_outputs(args, tasks, posed, samples)
        if pairs:
            progress.update(overall, description=f"{args.model}: translation")
            out["gen"] = {"translation": generate.score_translation(model, tok, pairs, batch_size=args.batch_size)}
            progress.advance(overall)
    out["config"] = {"fewshot": args.fewshot, "prompt_language": args.prompt_language, "seed": args.seed,
                     "max_length": max_len, "dtype": args.dtype, "world_size": suite.world()[1]}
    return out


def _progress(args: argparse.Namespace) -> Any:
    """Bars on stderr for the model as a whole and for the task being scored (none with -q, or off rank 0)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from occiforge.eval.suite import world

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=Console(stderr=True), transient=True,
                    disable=bool(getattr(args, "quiet", False)) or world()[0] != 0)


def _score_tasks(scorer: Any, tasks: list[Any], posed: dict[Any, Any], progress: Any, overall: Any,
                 model: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Multiple choice one task and language at a time, each with its own bar (rows of the scorer)."""
    from occiforge.eval import suite

    table: dict[str, Any] = {}
    samples: list[dict[str, Any]] = []
    for t in tasks:
        key = (t.name, t.lang)
        progress.update(overall, description=f"{model}: {t.name} {t.lang}")
        bar = progress.add_task(f"  {t.name} {t.lang}: {len(posed[key])} items", total=None)
        scorer.progress = lambda done, total, bar=bar: progress.update(bar, completed=done, total=total)
        part, rows = suite.score_mc(scorer, [t], {key: posed[key]})
        table.setdefault(t.name, {}).update(part[t.name])
        samples += rows
        progress.remove_task(bar)
        progress.advance(overall)
    scorer.progress = None
    return table, samples


def _check_unique(tasks: list[Any]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for t in tasks:
        if (t.name, t.lang) in seen and seen[t.name, t.lang] != t.source:
            raise UserError(f"{t.source}: task {t.name!r} in {t.lang!r} also comes from {seen[t.name, t.lang]}; rename a folder")
        seen[t.name, t.lang] = t.source


def _side_outputs(args: argparse.Namespace, tasks: list[Any], posed: dict[Any, Any], samples: list[dict[str, Any]]) -> None:
    from occiforge.eval.lmeval_export import export_task
    from occiforge.eval.suite import world

    if world()[0] != 0:
        return
    if args.export_lm_eval:
        folder = Path(args.export_lm_eval)
        folder.mkdir(parents=True, exist_ok=True)
        for t in tasks:
            export_task(folder, t.name, t.lang, posed[t.name, t.lang], t.template.version)
    if args.log_samples:
        artifacts.write_text_atomic(Path(args.log_samples), "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))


def _emit(obj: Any, output: str | None) -> None:
    if output is None:
        json.dump(obj, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        artifacts.write_json_atomic(Path(output), obj)


def _leaderboard(args: argparse.Namespace) -> int:
    from occiforge.eval import leaderboard

    board = leaderboard.from_result_files([Path(p) for p in args.leaderboard])
    if args.output and args.output.endswith(".md"):
        artifacts.write_text_atomic(Path(args.output), leaderboard.to_markdown(board))
    elif args.output:
        artifacts.write_json_atomic(Path(args.output), board)
    else:
        sys.stdout.write(leaderboard.to_markdown(board))
    return 0
