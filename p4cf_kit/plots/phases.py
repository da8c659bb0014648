"""Figure: how long each migration phase took, stacked per migration, with the medians."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from p4cf_kit.plots.export import FigureFiles, save_figure
from p4cf_kit.plots.style import figure_style, new_figure, phase_color

NAME = "phases"
STACK = ("checkpoint", "rewrite", "transfer", "restore", "switch", "other")
# With CRIU's frozen time known, the checkpoint bar is split: before the freeze the backend still
# serves; from the freeze on, clients wait.
SPLIT_STACK = ("before_freeze", "frozen", "rewrite", "transfer", "restore", "switch", "other")
LEGEND = {"before_freeze": "checkpoint: before the freeze", "frozen": "checkpoint: frozen (CRIU)"}


def plot_phase_breakdown(data: pd.DataFrame, out_dir: str | Path, name: str = NAME) -> FigureFiles:
    """Stacked bars of phase seconds per migration, plus a last bar of the per-phase medians.

    `data`: analysis.phase_breakdown output (migration, src, dst, <phase>_s, other_s, total_s,
    and before_freeze_s/frozen_s when CRIU's frozen time is known).
    """
    labels = [f"m{int(m)}\n{s}→{d}" for m, s, d in zip(data["migration"], data["src"], data["dst"])]
    stack = SPLIT_STACK if "frozen_s" in data.columns else STACK
    # A phase no migration had (transfer, within one machine) gets no legend entry.
    columns = [f"{p}_s" for p in stack if f"{p}_s" in data.columns
               and (p != "transfer" or data[f"{p}_s"].notna().any())]
    values = data[columns].fillna(0).to_numpy(dtype=float)
    medians = np.median(values, axis=0) if len(values) else np.zeros(len(columns))
    rows = np.vstack([values, medians]) if len(values) else medians[None, :]
    x = np.arange(len(rows))
    with figure_style():
        fig, ax = new_figure((max(5.5, 0.75 * len(rows) + 3.2), 4.8))
        bottom = np.zeros(len(rows))
        for j, column in enumerate(columns):
            phase = column[:-2]
            hatches = [None] * len(values) + ["//"]
            color = phase_color("checkpoint" if phase in LEGEND else phase)
            bars = ax.bar(x, rows[:, j], bottom=bottom, color=color, width=0.65,
                          alpha=0.45 if phase == "before_freeze" else 1.0,
                          label=LEGEND.get(phase, phase), edgecolor="white", linewidth=0.6)
            for bar, hatch in zip(bars, hatches):
                bar.set_hatch(hatch)
            bottom += rows[:, j]
        for xi, total in zip(x, bottom):
            ax.annotate(f"{total:.2f} s", (xi, total), xytext=(0, 3), textcoords="offset points",
                        ha="center", fontsize=9)
        ax.axvline(len(values) - 0.5, color="#888888", linewidth=0.8)
        ax.set_xticks(x, labels + ["median"], fontsize=9)
        ax.set_ylim(0, float(bottom.max()) * 1.15 if bottom.max() > 0 else 1)
        ax.set_ylabel("duration (s)")
        ax.set_xlabel("migration")
        ax.grid(axis="x", visible=False)
        ax.set_title(f"Migration phases ({len(values)} successful migration{'s' if len(values) != 1 else ''})")
        handles, names = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], names[::-1], title="phase", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        return save_figure(fig, out_dir, name, data)
