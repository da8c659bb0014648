"""Figure: the summary table (n, median, p95, max per metric) as an image."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from p4cf_kit.plots.export import FigureFiles, save_figure
from p4cf_kit.plots.style import figure_style, new_figure

NAME = "summary"


def _fmt(value: Any, unit: str) -> str:  # a table cell: a number, NaN, or missing
    """Numbers a reader can take in at a glance: ms without decimals, s with three."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    if math.isnan(number):
        return "–"
    if unit == "ms":
        return f"{number:,.0f}" if number >= 10 else f"{number:.1f}"
    if unit == "s":
        return f"{number:.3f}"
    if unit == "count":
        return f"{number:g}"
    return f"{number:,.2f}"


def plot_summary_table(table: pd.DataFrame, out_dir: str | Path, name: str = NAME,
                       title: str = "Summary") -> FigureFiles:
    """Render analysis.summary_table output (metric, unit, n, median, p95, max) as a table figure."""
    cells = [[str(r["metric"]), str(r["unit"]), f"{int(r['n'])}" if pd.notna(r["n"]) else "–",
              _fmt(r["median"], str(r["unit"])), _fmt(r["p95"], str(r["unit"])), _fmt(r["max"], str(r["unit"]))]
             for _, r in table.iterrows()]
    with figure_style():
        fig, ax = new_figure((8.5, 0.3 * (len(cells) + 1) + 0.5))
        ax.axis("off")
        if cells:
            tab = ax.table(cellText=cells, colLabels=["metric", "unit", "n", "median", "p95", "max"],
                           colLoc="center", cellLoc="right", loc="center",
                           colWidths=[0.44, 0.09, 0.07, 0.13, 0.13, 0.13])
            tab.auto_set_font_size(False)
            tab.set_fontsize(10)
            tab.scale(1, 1.35)
            for (row, col), cell in tab.get_celld().items():
                cell.set_edgecolor("#DDDDDD")
                if row == 0:
                    cell.set_text_props(fontweight="bold")
                    cell.set_facecolor("#EEEEEE")
                elif col == 0:
                    cell.set_text_props(ha="left")
                    cell.PAD = 0.03
                if row > 0 and row % 2 == 0:
                    cell.set_facecolor("#F7F7F7")
        ax.set_title(title, pad=4)
        fig.tight_layout()
        return save_figure(fig, out_dir, name, table)
