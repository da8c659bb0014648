"""Figure: replies per second per backend over time, migrations marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from p4cf_kit.plots.export import FigureFiles, save_figure
from p4cf_kit.plots.markers import LABEL_ROW_PT, place_marker_labels
from p4cf_kit.plots.style import figure_style, host_color, host_sort_key, nested_widths, new_figure

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
    steps = data["t_s"].drop_duplicates().sort_values().diff().dropna()
    bin_s = float(steps.median()) if len(steps) else 1.0  # one bin only (a short run): 1 s
    with figure_style():
        fig, ax = new_figure((10, 4.5))
        total = data.groupby("t_s")["messages_per_s"].sum()
        widths = nested_widths(hosts, 1.8)  # equal rates: the line below shows as a border
        for k, host in enumerate(hosts):
            part = data[data["host"] == host].sort_values("t_s")
            ax.stairs(part["messages_per_s"].to_numpy(), np.r_[part["t_s"].to_numpy(), part["t_s"].max() + bin_s],
                      color=host_color(host), linewidth=widths[host], label=host, baseline=None, zorder=2 + k,
                      gid=f"rate:{host}")
        if len(hosts) > 1:
            ax.stairs(total.to_numpy(), np.r_[total.index.to_numpy(), total.index.max() + bin_s], color="#222222",
                      linewidth=1.0, linestyle=":", label="all backends", baseline=None, zorder=3 + len(hosts))
        top = float(total.max()) if len(total) and float(total.max()) > 0 else 1.0
        ax.set_ylim(0, top * 1.1)
        ax.set_xlim(0, float(data["t_s"].max()) + bin_s if len(data) else 1)
        ax.set_xlabel("time since start of run (s)")
        ax.set_ylabel(f"replies per second ({bin_s:g} s bins)")
        ax.set_title("Throughput per backend (client log)")
        ax.legend(title="backend", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        # Many markers (a series of migrations): short labels ("m7"); rows keep labels apart.
        crowded = len(markers) > 6
        rows = place_marker_labels(fig, ax, markers, fontsize=8 if crowded else 9, short=crowded)
        if rows:  # headroom above the data for the label rows
            band = (rows * LABEL_ROW_PT * (8 if crowded else 9) / 8 + 6) * fig.dpi / 72
            free = 1.0 - band / ax.get_window_extent().height
            ax.set_ylim(0, top / max(free - 0.05, 0.3))
        return save_figure(fig, out_dir, name, {"": data, MARKERS_PART: markers})
