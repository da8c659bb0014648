"""Figure: request latency per operation (p50 and p99 per 100 ms) around each migration."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from p4cf_kit.plots.export import FigureFiles, save_figure
from p4cf_kit.plots.style import figure_style, new_figure

NAME = "latency"
_OP_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
MAX_COLUMNS = 5


def plot_latency_around_migrations(data: pd.DataFrame, out_dir: str | Path, name: str = NAME) -> FigureFiles:
    """One small panel per migration: p50 (solid) and p99 (dashed) latency per op on a log axis,
    time from the migration's start. `data`: analysis.latency_bins_around (BIN_COLUMNS)."""
    migrations = sorted(int(m) for m in data["migration"].unique()) or [0]
    ops = sorted(str(o) for o in data["op"].unique())
    cols = min(MAX_COLUMNS, len(migrations))
    rows = math.ceil(len(migrations) / cols)
    with figure_style():
        fig, axes = new_figure((2.6 * cols + 2.6, 2.1 * rows + 0.8), rows, cols, sharex=True, sharey=True,
                               squeeze=False)
        for i, k in enumerate(migrations):
            ax = axes[i // cols][i % cols]
            part = data[data["migration"] == k]
            for j, op in enumerate(ops):
                series = part[part["op"] == op].sort_values("t_s")
                color = _OP_COLORS[j % len(_OP_COLORS)]
                ax.plot(series["t_s"], series["p50_ms"], color=color, linewidth=1.2, label=f"{op} p50")
                ax.plot(series["t_s"], series["p99_ms"], color=color, linewidth=1.0, linestyle="--",
                        label=f"{op} p99")
            ax.axvline(0, color="#888888", linewidth=0.8, linestyle=":")
            ax.set_yscale("log")
            ax.set_title(f"m{k}", fontsize=9)
            ax.tick_params(labelsize=7)
        for i in range(len(migrations), rows * cols):
            axes[i // cols][i % cols].set_visible(False)
        fig.supxlabel("time from migration start (s; 100 ms bins by send time)", fontsize=9)
        fig.supylabel("latency (ms, log)", fontsize=9)
        fig.suptitle("Request latency around each migration (p50 solid, p99 dashed)", fontsize=10)
        handles, labels = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="center right", fontsize=8)
        fig.tight_layout(rect=(0, 0, 1 - 1.1 / (2.6 * cols + 2.6), 0.93))
        return save_figure(fig, out_dir, name, data)
