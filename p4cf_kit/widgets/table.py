"""A small HTML table for panels: padded cells, numbers right-aligned and rounded per unit.

Why not DataFrame.to_html: its cells have no padding inside an ipywidgets HTML (the
notebook's table CSS does not apply there), and one float format for every column
prints seconds and milliseconds alike ("1,341.216 ms").
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

CELL = "padding:3px 10px;border-bottom:1px solid #DDDDDD;white-space:nowrap"


def seconds(value: Any) -> str:
    return "–" if _missing(value) else f"{float(value):.3f}"


def milliseconds(value: Any) -> str:
    return "–" if _missing(value) else f"{float(value):,.0f}"


def yes_no(value: Any) -> str:
    return "–" if _missing(value) else ("✔" if bool(value) else "✖ failed")


def plain(value: Any) -> str:
    return "–" if _missing(value) else str(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value) in ("", "<NA>", "nan")


def html_table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, tuple[str, Callable[[Any], str]]],
               css_class: str = "") -> str:
    """`columns`: key -> (header, formatter). Text columns left-aligned, formatted numbers right."""
    head = "".join(f'<th style="{CELL};text-align:left;background:#F2F2F2">{html.escape(h)}</th>'
                   for h, _ in columns.values())
    body = []
    for row in rows:
        cells = []
        for key, (_, fmt) in columns.items():
            text = fmt(row.get(key))
            align = "left" if fmt is plain else "right"
            cells.append(f'<td style="{CELL};text-align:{align}">{html.escape(text)}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<table class="{css_class}" style="border-collapse:collapse;font-size:90%;margin-top:4px">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
