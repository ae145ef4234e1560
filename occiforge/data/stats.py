"""Per-language figures of the data stage, folded from datatrove's merged stats of every pass.

Steps count `<lang>/<what>` (`dropped_<reason>`, `<split>_docs|bytes|chars`, ...) and readers
`bad|<reason>|<file>`; this module turns them into `stats.json` rows and the table
`occiforge data stats -c RECIPE` prints.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

SPLITS = ("train", "heldout")


def _counters(stats_files: list[Path]) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for path in stats_files:
        if not path.is_file():
            continue
        for step in json.loads(path.read_text()):
            for key, value in step.get("stats", {}).items():
                total[key] += int(value["total"] if isinstance(value, dict) else value)
    return total


def fold_stats(stats_files: list[Path], langs: list[str]) -> tuple[dict[str, Any], dict[str, dict[str, int]], dict[str, Any]]:
    """(rows of the run's languages, bad input per file and reason, rows of other labels: `und` etc.)."""
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    bad: dict[str, dict[str, int]] = defaultdict(dict)
    for key, value in _counters(stats_files).items():
        if key.startswith("bad|"):
            _, reason, file = key.split("|", 2)
            bad[file][reason] = value
            continue
        lang, _, what = key.partition("/")
        if what and "/" not in what:
            table[lang][what] += value
    rows = {}
    for lang in sorted(set(table) | set(langs), key=lambda x: (x not in langs, langs.index(x) if x in langs else 0, x)):
        row = table[lang]
        dropped = {k.removeprefix("dropped_"): v for k, v in sorted(row.items()) if k.startswith("dropped_")}
        kept = sum(row.get(f"{s}_docs", 0) for s in SPLITS)
        rows[lang] = {"read": kept + sum(dropped.values()), "kept": kept, "dropped": dropped,
                      **{k: v for k, v in sorted(row.items()) if not k.startswith("dropped_")}}
    return {k: v for k, v in rows.items() if k in langs}, dict(bad), {k: v for k, v in rows.items() if k not in langs}


def format_table(stats: dict[str, Any], tokens: dict[str, Any] | None = None) -> str:
    """Documents, characters and tokens kept, and documents dropped by reason, per language."""
    reasons = sorted({r for row in stats.values() for r in row.get("dropped", {})})
    head = ["lang", "read", "kept", "heldout", "chars kept", *(["tokens"] if tokens else []), *[f"-{r}" for r in reasons]]
    lines = [head]
    for lang, row in stats.items():
        chars = sum(row.get(f"{s}_chars", 0) for s in SPLITS)
        cells = [lang, row.get("read", 0), row.get("kept", 0), row.get("heldout_docs", 0), chars]
        if tokens:
            cells.append((tokens.get(lang) or {}).get("tokens", "-"))
        cells += [row.get("dropped", {}).get(r, 0) for r in reasons]
        lines.append([f"{c:,}" if isinstance(c, int) else str(c) for c in cells])
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in lines)
