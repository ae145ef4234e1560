"""HTML tables for the run report (the stage's own sections and the tokenizer section)."""

from __future__ import annotations

import html
from typing import Any


def table_html(rows: dict[str, dict[str, Any]], cols: list[str], lower_is_better: bool | None = None,
               spaced_headers: bool = False) -> str:
    """An HTML table, rows x cols; with a direction given, the best value of each column is bold.
    `spaced_headers` shows `bytes_per_token` as `bytes per token`."""
    best: dict[str, Any] = {}
    if lower_is_better is not None:
        for c in cols:
            vals = [r[c] for r in rows.values() if isinstance(r.get(c), (int, float))]
            best[c] = (min if lower_is_better else max)(vals) if vals else None
    head = "".join(f"<th>{html.escape(c.replace('_', ' ') if spaced_headers else c)}</th>" for c in cols)
    body = []
    for name, row in rows.items():
        cells = []
        for c in cols:
            v = row.get(c, "")
            text = f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))
            cells.append(f"<td><b>{text}</b></td>" if best.get(c) is not None and v == best[c] else f"<td>{text}</td>")
        body.append(f"<tr><th>{html.escape(str(name))}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(body)}</table>"
