"""New-token embedding init after a tokenizer extension: random vs mean vs decomposition (plain, calibrated).

    python benchmarks/bench_tokenizer_init.py [--steps 100] [--new-tokens 1000] [--seeds 0 1 2] [--settings el:base de:cpt-de ...] [--untied]

Two settings, both with models trained by the demo (runs/demo/models/* if present, otherwise
trained here with the demo recipe): Greek on the English base model (`base`, which has never
seen Greek), and German on the demo's German model (`cpt-de`, which has; the demo tokenizer's
German fertility, 2.4, is above the 2.0 rule); `--settings` adds others (`lang:model`) to check
the choice on languages it was not made on. Text comes from ../shared/data/mono (the demo
corpus if that is absent). For each init a recipe extends the demo tokenizer for the target
language (`tokenizer.extend`) and continues pre-training bilingually (30% English replay).
Target-language bits per byte on the run's held-out text are measured right after the
extension (the model exactly as the train stage builds it, no training) and after the short
CPT (the eval stage), next to the same CPT with the unextended tokenizer. Each cell is the median
over `--seeds` (the recipe seed: random rows and the CPT's data order), after-CPT cells with
their range. `--untied` runs every setting on a copy of the model whose output embedding is its
own matrix (a copy of the tied one), as in Mistral or Llama 3 8B.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import statistics
import time
from itertools import islice
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("OCCIFORGE_SHARED", REPO.parent / "shared")) / "data"
sys.path.insert(0, str(REPO))

from occiforge.cli import main as occiforge  # noqa: E402

DEMO_ARCH = {"hidden_size": 96, "num_layers": 2, "num_heads": 4, "intermediate_size": 256, "max_position_embeddings": 256}


def demo_models(work: Path) -> Path:
    """The folder holding the demo's `base` and `cpt-de` models."""
    existing = REPO / "runs" / "demo" / "models"
    if all((existing / name / "model.safetensors").is_file() for name in ("base", "cpt-de")):
        return existing
    run = work / "demo"
    models = "{base: {init: scratch, mixture: {en: 1.0}, steps: 400}, cpt: {init: base, targets: [de], replay: 0.3, steps: 200}}"
    assert occiforge(["run", str(REPO / "recipes" / "demo.yaml"), "-q", "--to", "train", "--set", f"run_dir={run}", "--set", f"models={models}"]) == 0
    return run / "models"


def untied_copy(model: Path, out: Path) -> Path:
    """`model` with `lm_head` as its own matrix (same values), saved as a HF folder with its tokenizer."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(str(model))
    lm.config.tie_word_embeddings = False
    lm.lm_head.weight = torch.nn.Parameter(lm.get_input_embeddings().weight.detach().clone())
    lm.save_pretrained(str(out))
    for f in model.glob("*token*"):
        shutil.copy(f, out / f.name)
    return out


def recipe(work: Path, base: Path, lang: str, init: str | None, steps: int, new_tokens: int, seed: int) -> Path:
    source = {"name": "shared", "path": str(SHARED / "mono")} if (SHARED / "mono").is_dir() else {"name": "demo", "path": "builtin:demo"}
    tok: dict[str, Any] = {"pretrained": str(base)}
    if init:
        tok["extend"] = {"languages": [lang], "new_tokens": new_tokens}
    tree = {
        "name": f"init-{lang}-{init or 'none'}", "run_dir": str(work / f"run-{lang}"), "seed": seed, "languages": ["en", lang],
        "data": {"sources": [source], "heldout_fraction": 0.1},
        "tokenizer": tok,
        "train": {"architecture": DEMO_ARCH, "seq_len": 128, "batch_size": 16, "steps": steps, "save_every": 1000,
                  "threads": 2, "optim": {"lr": 0.002, "warmup_steps": 10, "schedule": "cosine", "min_lr_ratio": 0.1}},
        "models": {"cpt": {"init": str(base), "targets": [lang], "replay": 0.3, **({"embedding_init": init} if init else {})}},
        "eval": {"languages": [lang, "en"], "max_docs_per_language": 60},
        "report": {"enabled": False},
    }
    path = work / f"{tree['name']}.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def before_training(run: Path, base: Path, langs: tuple[str, ...], seed: int, init: str) -> dict[str, float]:
    """bpb per language of the model exactly as the train stage builds it (embeddings grown and initialised)."""
    from occiforge.eval.bpb import bits_per_byte
    from occiforge.io import iter_texts, open_tokens
    from occiforge.lm import load_tokenizer, read_extension
    from occiforge.recipe import ArchitectureConfig
    from occiforge.train.model import build_model

    tok = load_tokenizer(str(run / "tokenizer"))
    streams = {d.name: open_tokens(run / "tokens", d.name) for d in (run / "tokens").iterdir() if d.is_dir()}
    model = build_model(str(base), ArchitectureConfig(), tok, seed, run / "models", set(), streams,
                        extension=read_extension(run / "tokenizer"), embedding_init=init)
    return {lang: bits_per_byte(model, tok, list(islice(iter_texts(run / "data", lang, "heldout"), 60)), max_len=129)["bpb"]
            for lang in langs}


def one(work: Path, base: Path, lang: str, init: str | None, steps: int, new_tokens: int, seed: int) -> dict[str, Any]:
    path = recipe(work, base, lang, init, steps, new_tokens, seed)
    assert occiforge(["run", str(path), "-q", "--to", "tokens"]) == 0
    run = work / f"run-{lang}"
    report = json.loads((run / "tokenizer" / "report.json").read_text())
    before = before_training(run, base, (lang, "en"), seed, init or "decomposition-calibrated")
    row = {"fertility": report[lang]["fertility"], "before": before[lang], "en_before": before["en"]}
    t0 = time.perf_counter()
    assert occiforge(["run", str(path), "-q"]) == 0
    bpb = json.loads((run / "eval" / "results.json").read_text())["bpb"][f"cpt-{lang}"]
    row.update(after=bpb[lang], en_after=bpb["en"], seconds=time.perf_counter() - t0)
    return row


def cell(runs: list[dict[str, Any]], key: str, spread: bool = False) -> str:
    values = [r[key] for r in runs]
    text = f"{statistics.median(values):.3f}"
    return f"{text} ({min(values):.3f}-{max(values):.3f})" if spread and len(values) > 1 else text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--new-tokens", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=["el:base", "de:cpt-de"], help="lang:demo-model pairs")
    parser.add_argument("--untied", action="store_true", help="untie the demo models' embeddings first")
    args = parser.parse_args()
    settings = [tuple(s.split(":")) for s in args.settings]
    inits = (None, "random", "mean", "decomposition", "decomposition-calibrated")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = demo_models(work)
        for lang, model in settings:
            start = untied_copy(models / model, work / f"untied-{model}") if args.untied else models / model
            rows = {init or "none (demo tokenizer)": [one(work, start, lang, init, args.steps, args.new_tokens, seed)
                                                      for seed in args.seeds] for init in inits}
            print(f"\n{lang} on the demo's `{model}` model{' (untied copy)' if args.untied else ''}; text: {SHARED / 'mono' if (SHARED / 'mono').is_dir() else 'demo corpus'}; "
                  f"{args.new_tokens} new tokens; CPT {args.steps} steps x 16 x 128 tokens, 30% English replay; "
                  f"median over seeds {args.seeds}\n")
            print(f"| init | {lang} fertility | {lang} bpb after extension | {lang} bpb after CPT | en bpb after extension | en bpb after CPT |")
            print("|---|---|---|---|---|---|")
            for name, runs in rows.items():
                print(f"| {name} | {runs[0]['fertility']:.2f} | {cell(runs, 'before')} | {cell(runs, 'after', True)} | "
                      f"{cell(runs, 'en_before')} | {cell(runs, 'en_after', True)} |", flush=True)
            wins = [(c["before"] < r["before"], c["after"] < r["after"]) for c, r in zip(rows["decomposition-calibrated"], rows["random"])]
            print(f"\ndecomposition-calibrated below random, per seed: after extension {sum(w[0] for w in wins)}/{len(wins)}, "
                  f"after CPT {sum(w[1] for w in wins)}/{len(wins)}", flush=True)


if __name__ == "__main__":
    main()
