"""Figure: replies per second per backend over time, migrations marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from p4cf_kit.plots.export import FigureFiles, save_figure
from p4cf_kit.plots.style import MARKER_COLOR, figure_style, host_color, host_sort_key, new_figure

NAME = "throughput"
MARKERS_PART = "markers"


def plot_throughput(data: pd.DataFrame, markers: pd.DataFrame | None, out_dir: str | Path,
                    name: str = NAME) -> FigureFiles:
    """One step line per host of replies/s, with a labelled vertical line per marker.

    `data`: t_s, host, messages_per_s (analysis.throughput_per_backend).
    `markers`: t_s, label (analysis.migration_markers, plus any pool changes).
    """
    data = data.assign(host=data["host"].astype(str))
    markers = markers if markers is not None else pd.DataFrame(columns=["t_s", "label"])
    hosts = sorted(set(data["host"]), key=host_sort_key)
    bin_s = float(data["t_s"].drop_duplicates().sort_values().diff().median()) if len(data) > 1 else 1.0
    with figure_style():
        fig, ax = new_figure((10, 4.5))
        total = data.groupby("t_s")["messages_per_s"].sum()
        for host in hosts:
            part = data[data["host"] == host].sort_values("t_s")
            ax.stairs(part["messages_per_s"].to_numpy(), np.r_[part["t_s"].to_numpy(), part["t_s"].max() + bin_s],
                      color=host_color(host), linewidth=1.8, label=host, baseline=None)
        if len(hosts) > 1:
            ax.stairs(total.to_numpy(), np.r_[total.index.to_numpy(), total.index.max() + bin_s], color="#222222",
                      linewidth=1.0, linestyle=":", label="all backends", baseline=None)
        top = float(total.max()) * 1.25 if len(total) else 1.0
        ax.set_ylim(0, top)
        # Many markers (a series of migrations): short labels ("m7") on two staggered rows,
        # so neighbouring labels do not overprint each other.
        crowded = len(markers) > 6
        for i, (_, marker) in enumerate(markers.iterrows()):
            label = str(marker["label"])
            ax.axvline(float(marker["t_s"]), color=MARKER_COLOR, linestyle="--", linewidth=1)
            ax.annotate(label.split()[0] if crowded else label, (float(marker["t_s"]), top),
                        xytext=(3, -3 - 11 * (i % 2 if crowded else 0)), textcoords="offset points",
                        ha="left", va="top", fontsize=8 if crowded else 9, color=MARKER_COLOR)
        ax.set_xlim(0, float(data["t_s"].max()) + bin_s if len(data) else 1)
        ax.set_xlabel("time since start of run (s)")
        ax.set_ylabel(f"replies per second ({bin_s:g} s bins)")
        ax.set_title("Throughput per backend (client log)")
        ax.legend(title="backend", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        return save_figure(fig, out_dir, name, {"": data, MARKERS_PART: markers})
