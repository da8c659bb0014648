"""Figure: request latency per operation (p50 and p99 per 100 ms) around each migration."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.ticker import FuncFormatter

from p4cf_kit.plots.export import FigureFiles, save_figure
from p4cf_kit.plots.style import MARKER_COLOR, figure_style, new_figure

NAME = "latency"
_OP_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
MIGRATION_SHADE = "#dddddd"
MAX_COLUMNS = 5
PANEL_W_IN, PANEL_H_IN = 2.9, 2.1


def _panel_title(part: pd.DataFrame, k: int) -> str:
    labels = part["label"].dropna() if "label" in part else pd.Series(dtype=str)
    return str(labels.iloc[0]) if len(labels) else f"m{k}"


def plot_latency_around_migrations(data: pd.DataFrame, out_dir: str | Path, name: str = NAME) -> FigureFiles:
    """One small panel per migration: p50 (solid) and p99 (dashed) latency per op on a log axis,
    time from the migration's start, the migration itself shaded; each panel's title names the
    migration and its data check. `data`: analysis.latency_bins_around (BIN_COLUMNS)."""
    migrations = sorted(int(m) for m in data["migration"].unique()) or [0]
    ops = sorted(str(o) for o in data["op"].unique())
    cols = min(MAX_COLUMNS, len(migrations))
    rows = math.ceil(len(migrations) / cols)
    width, height = PANEL_W_IN * cols + 1.6, PANEL_H_IN * rows + 1.0
    with figure_style():
        fig, axes = new_figure((width, height), rows, cols, sharex=True, sharey=True, squeeze=False)
        for i, k in enumerate(migrations):
            ax = axes[i // cols][i % cols]
            part = data[data["migration"] == k]
            length = part["migration_s"].dropna() if "migration_s" in part else pd.Series(dtype=float)
            if len(length):
                ax.axvspan(0, max(float(length.iloc[0]), 0.01), color=MIGRATION_SHADE, linewidth=0, zorder=0)
            ax.axvline(0, color=MARKER_COLOR, linewidth=0.8, linestyle=":")
            for j, op in enumerate(ops):
                series = part[part["op"] == op].sort_values("t_s")
                color = _OP_COLORS[j % len(_OP_COLORS)]
                ax.plot(series["t_s"], series["p50_ms"], color=color, linewidth=1.2, label=f"{op} p50")
                ax.plot(series["t_s"], series["p99_ms"], color=color, linewidth=1.0, linestyle="--",
                        label=f"{op} p99")
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax.set_title(_panel_title(part, k), fontsize=8)
            ax.tick_params(labelsize=7)
        for i in range(len(migrations), rows * cols):
            axes[i // cols][i % cols].set_visible(False)
        fig.supxlabel("time from migration start (s); requests in 100 ms bins by send time; "
                      "shaded: the migration (checkpoint to switch update)", fontsize=9)
        fig.supylabel("latency (ms, log scale)", fontsize=9)
        fig.suptitle("Request latency around each migration: p50 solid, p99 dashed", fontsize=10)
        handles, labels = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="center right", fontsize=8)
        fig.tight_layout(rect=(0, 0, 1 - 1.2 / width, 1 - 0.15 / height))
        return save_figure(fig, out_dir, name, data)
