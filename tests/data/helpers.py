"""Small builders for data-stage tests: JSONL folders, recipes over them, reading the output."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import yaml

# one paragraph per language, long enough for the length and Gopher filters
TEXTS = {
    "de": "Am Wochenende fahren wir mit dem Zug an den See, und dort essen wir zu Mittag in einem kleinen Gasthaus. "
          "Die Kinder spielen am Ufer, während die Eltern in der Sonne sitzen und die Zeitung lesen. Am Abend fahren "
          "wir mit dem letzten Zug zurück in die Stadt, müde und zufrieden mit dem schönen Tag am Wasser.",
    "fr": "Le week-end, nous prenons le train pour aller au lac et nous déjeunons dans une petite auberge au bord de "
          "l'eau. Les enfants jouent sur la rive pendant que les parents lisent le journal au soleil. Le soir, nous "
          "rentrons en ville avec le dernier train, fatigués mais contents de cette belle journée.",
    "en": "At the weekend we take the train to the lake and have lunch in a small inn by the water. The children play "
          "on the shore while the parents sit in the sun and read the newspaper. In the evening we take the last train "
          "back to the city, tired but happy with the lovely day at the lake.",
}


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, bytes) else json.dumps(r, ensure_ascii=False).encode() for r in records]
    data = b"\n".join(lines) + b"\n"
    if path.suffix == ".gz":
        data = gzip.compress(data)
    elif path.suffix == ".zst":
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


def variant(text: str, i: int) -> str:
    """A distinct document in the same language: a numbered sentence in front."""
    return f"Nummer {i}: {i * 7919 % 1000} {i * 104729 % 997}. " + text


def recipe(tmp: Path, sources: list[dict], langs: list[str], **data: Any) -> Path:
    tree = {"name": "t", "run_dir": str(tmp / "run"), "languages": langs, "models": {},
            "data": {"sources": sources, "heldout_fraction": 0.2, **data}}
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def read_out(run: Path, lang: str, split: str | None = None) -> list[dict]:
    out = []
    for sp in [split] if split else ["train", "heldout"]:
        for f in sorted((run / "data" / lang / sp).glob("*.jsonl.gz")):
            with gzip.open(f, "rt") as fh:
                out += [json.loads(line) for line in fh]
    return out


def stats(run: Path) -> dict:
    return json.loads((run / "data" / "stats.json").read_text())
