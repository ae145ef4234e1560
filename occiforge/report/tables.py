"""The report's tables as plain data (the template draws them) and the number formats they use.

Tables list languages down the rows and models across, so 24 languages make a long table, not
a wide one; the template still puts every table in a box that scrolls sideways on its own, so
many models never widen the page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Z95 = 1.959963984540054  # two-sided 95% normal quantile: interval = value ± Z95 * stderr


@dataclass
class Cell:
    text: str
    cls: str = ""  # CSS class: "best", "better", "worse", "muted"
    title: str = ""  # hover text: the exact value or what the cell means
    sub: str = ""  # a second, smaller line (e.g. the change against the base model)
    sub_cls: str = ""


@dataclass
class Row:
    label: str
    cells: list[Cell]
    note: str = ""  # shown under the label (e.g. a language's name)


@dataclass
class Table:
    head: list[str]  # column headers, after the row-label column
    rows: list[Row] = field(default_factory=list)
    corner: str = ""  # the header of the row-label column
    caption: str = ""


def num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return f"{v:,}" if isinstance(v, int) else f"{v:.{digits}f}"


def signed(v: float, digits: int = 3) -> str:
    return f"{v:+.{digits}f}".replace("-", "−")


def pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{100 * v:.{digits}f}"


def interval(value: float, stderr: float | None) -> str:
    """"54.3 ± 8.1" in percent; the bare value where the stderr is unknown (one item)."""
    return pct(value) if stderr is None else f"{pct(value)} ± {pct(Z95 * stderr)}"


def mixture_text(mixture: Mapping[str, float] | None) -> str:
    """'de 70% · en 30%': the sampling weights as shares."""
    if not mixture:
        return "–"
    total = sum(w for w in mixture.values() if w > 0) or 1.0
    return " · ".join(f"{lang} {100 * w / total:.0f}%" for lang, w in mixture.items() if w > 0)


def by_language(langs: Sequence[str], names: Sequence[str], value: Callable[[str, str], Cell | None],
                lower_is_better: bool | None = None, best_of: Callable[[str, str], float | None] | None = None,
                lang_note: Callable[[str], str] = lambda lang: "") -> list[Row]:
    """Rows of languages x columns of names; with a direction, the best numeric cell of a row is marked."""
    rows = []
    for lang in langs:
        cells = [value(lang, name) or Cell("–", "muted") for name in names]
        if lower_is_better is not None and best_of is not None:
            scores = {i: best_of(lang, n) for i, n in enumerate(names)}
            scores = {i: s for i, s in scores.items() if s is not None}
            if len(scores) > 1:
                top = (min if lower_is_better else max)(scores.values())
                for i in (i for i, s in scores.items() if s == top):  # every model on the best value
                    cells[i].cls = (cells[i].cls + " best").strip()
        rows.append(Row(lang, cells, lang_note(lang)))
    return rows


def drop_empty_columns(table: Table) -> None:
    """Remove the columns where no row has a value: a figure no artifact records is left out."""
    keep = [j for j in range(len(table.head)) if any(r.cells[j].text != "–" for r in table.rows)]
    table.head = [table.head[j] for j in keep]
    for r in table.rows:
        r.cells = [r.cells[j] for j in keep]
