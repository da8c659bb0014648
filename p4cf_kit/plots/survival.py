"""Figure: connections of the moved backend that survived or broke, per migration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from p4cf_kit.plots.export import FigureFiles, save_figure
from p4cf_kit.plots.style import BROKEN_COLOR, SURVIVED_COLOR, figure_style, new_figure

NAME = "survival"


def plot_survival(data: pd.DataFrame, out_dir: str | Path, name: str = NAME) -> FigureFiles:
    """Stacked bars survived/broken per migration, counts written in the bars.

    `data`: analysis.survival_per_migration output (migration, survived, broken, total),
    optionally with a `label` column ("m1 h2→h4") for the x ticks.
    """
    x = np.arange(len(data))
    labels = (data["label"].astype(str).str.replace(" ", "\n", n=1).tolist() if "label" in data.columns
              else [f"m{int(m)}" for m in data["migration"]])
    with figure_style():
        fig, ax = new_figure((max(5.0, 0.7 * len(data) + 3.0), 4.2))
        survived = data["survived"].to_numpy(dtype=float)
        broken = data["broken"].to_numpy(dtype=float)
        ax.bar(x, survived, color=SURVIVED_COLOR, width=0.6, label="survived")
        ax.bar(x, broken, bottom=survived, color=BROKEN_COLOR, width=0.6, label="broken")
        for xi, s, b in zip(x, survived, broken):
            if s:
                ax.annotate(f"{int(s)}", (xi, s / 2), ha="center", va="center", color="white", fontweight="bold")
            if b:
                ax.annotate(f"{int(b)}", (xi, s + b / 2), ha="center", va="center", color="white", fontweight="bold")
        total = int(data["total"].sum()) if len(data) else 0
        kept = int(data["survived"].sum()) if len(data) else 0
        ax.set_xticks(x, labels, fontsize=9)
        # at least 1: a migration whose backend held no connection still gets an axis
        ax.set_ylim(0, max(1.0, float((survived + broken).max()) * 1.15) if len(data) else 1)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("connections of the moved backend")
        ax.set_xlabel("migration")
        ax.grid(axis="x", visible=False)
        ax.set_title(f"Connection survival: {kept} of {total} kept ({100 * kept / total:.0f} %)" if total
                     else "Connection survival")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        return save_figure(fig, out_dir, name, data)
