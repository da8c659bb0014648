"""Vertical markers (migrations, pool changes) with labels that never overlap.

Why one placement for every time chart: labels of close markers overprinted each other, and a
label near the right edge ran out of the axes into the legend. Each label takes the first row
(from the top of the axes) where it overlaps no label already placed, and turns to the left of
its line where it would leave the axes. Artists carry gids so tests can read what is drawn.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from p4cf_kit.plots.style import MARKER_COLOR, agg_canvas

MARKER_GID = "marker-line"  # gid of a marker's dashed line
LABEL_GID = "marker-label"  # gid of its label
LABEL_ROW_PT = 13           # height of one row of labels at 8 pt, in points


def place_marker_labels(fig: Figure, ax: Axes, markers: pd.DataFrame, fontsize: float = 8,
                        short: bool = False) -> int:
    """Dashed lines, and labels in the top rows of the axes: each label takes the first row where
    it overlaps no label already placed, and turns left of its line where it would leave the axes.
    `short` labels a marker with its first word only (a series of migrations: "m7").
    Returns the number of rows used."""
    renderer = agg_canvas(fig).get_renderer()
    row_pt = LABEL_ROW_PT * fontsize / 8
    box = ax.get_window_extent(renderer)
    placed: list[tuple[int, Any]] = []
    rows = 0
    for _, m in markers.sort_values("t_s").iterrows():
        t = float(m["t_s"])
        ax.axvline(t, color=MARKER_COLOR, linestyle="--", linewidth=1.2, zorder=10, gid=MARKER_GID)
        row = 0
        while True:
            label = str(m["label"]).split()[0] if short else str(m["label"])
            text = ax.annotate(label, (t, 1.0), xycoords=("data", "axes fraction"),
                               xytext=(3, -2 - row_pt * row), textcoords="offset points", va="top",
                               ha="left", fontsize=fontsize, color=MARKER_COLOR, gid=LABEL_GID, annotation_clip=False,
                               zorder=11,
                               bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none",
                                     "alpha": 0.85})
            extent = text.get_window_extent(renderer)
            if extent.x1 > box.x1:  # would leave the axes (into the legend): put it left of the line
                text.set_horizontalalignment("right")
                text.xyann = (-3, -2 - row_pt * row)
                extent = text.get_window_extent(renderer)
            if not any(extent.overlaps(e) for _, e in placed):
                placed.append((row, extent))
                rows = max(rows, row + 1)
                break
            text.remove()
            row += 1
    return rows
