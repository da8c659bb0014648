"""Figure: what the client saw around one migration, phases shaded.

Top: round-trip time of every reply (log scale), coloured by backend.
Bottom: one row per connection with a tick per reply, so a gap is a white hole
(its length written in it when it stands out).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from p4cf_kit.plots.export import FigureFiles, save_figure
from p4cf_kit.plots.style import (
    BROKEN_COLOR,
    figure_style,
    host_color,
    host_sort_key,
    new_figure,
    phase_color,
    readable_log_axis,
)

NAME = "timeline"
PHASES_PART = "phases"
ERRORS_PART = "errors"


def _label_gap(ax: Axes, times: pd.Series, row: int) -> None:
    """Write the length of a connection's longest silence inside it, when it stands out."""
    t = np.sort(times.to_numpy(dtype=float))
    if t.size < 3:
        return
    gaps = np.diff(t)
    i = int(np.argmax(gaps))
    if gaps[i] < max(0.2, 10 * float(np.median(gaps))):
        return
    ax.annotate(f"{gaps[i] * 1000:,.0f} ms", ((t[i] + t[i + 1]) / 2, row), ha="center", va="center", fontsize=8.5,
                color="#333333", bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none",
                                       "alpha": 0.8})


def plot_client_timeline(points: pd.DataFrame, phases: pd.DataFrame, out_dir: str | Path, name: str = NAME,
                         errors: pd.DataFrame | None = None, label: str = "") -> FigureFiles:
    """Draw the two-panel timeline of one migration.

    `points`: t_s (seconds since migration start), conn_id, host, rtt_ms, one row per reply.
    `phases`: phase, start_s, end_s (same time origin), optionally `label` for the title.
    `errors`: t_s, conn_id, event, for connections that broke (drawn as ✕).
    """
    points = points.assign(host=points["host"].astype(str))
    errors = errors if errors is not None and not errors.empty else pd.DataFrame(columns=["t_s", "conn_id", "event"])
    if not label and "label" in phases.columns and len(phases):
        label = str(phases["label"].iloc[0])
    conns = sorted(set(points["conn_id"]) | set(errors["conn_id"]))
    conn_host = points.groupby("conn_id")["host"].agg(lambda s: s.mode().iloc[0]).to_dict()
    with figure_style():
        fig, (ax_rtt, ax_raster) = new_figure((10, 3.2 + 0.28 * len(conns) + 1.2), 2, 1, sharex=True,
                                                gridspec_kw={"height_ratios": [3, max(1.5, 0.28 * len(conns))]})
        for ax in (ax_rtt, ax_raster):
            for _, ph in phases.iterrows():
                ax.axvspan(float(ph["start_s"]), float(ph["end_s"]), color=phase_color(str(ph["phase"])),
                           alpha=0.22, linewidth=0)
            ax.axvline(0, color="#444444", linewidth=0.8, linestyle="--")
        for host in sorted(set(points["host"]), key=host_sort_key):
            part = points[points["host"] == host]
            ax_rtt.scatter(part["t_s"], part["rtt_ms"], s=5, color=host_color(host), label=host, alpha=0.7,
                           linewidths=0, rasterized=True)
        readable_log_axis(ax_rtt, "y")
        ax_rtt.set_ylabel("reply round-trip time\n(ms, log scale)")
        phase_handles = [Patch(color=phase_color(str(p)), alpha=0.4, label=str(p)) for p in phases["phase"]]
        host_handles, _ = ax_rtt.get_legend_handles_labels()
        for handle in host_handles:
            handle.set_sizes([30])
            handle.set_alpha(1)
        hosts_legend = ax_rtt.legend(handles=host_handles, loc="upper left", fontsize=9, title="backend",
                                     title_fontsize=9, bbox_to_anchor=(1.01, 1.0), alignment="left")
        ax_rtt.add_artist(hosts_legend)
        ax_rtt.legend(handles=phase_handles, loc="lower left", fontsize=9, title="migration phase",
                      title_fontsize=9, bbox_to_anchor=(1.01, 0.0), alignment="left")
        ax_rtt.set_title(f"Client view around migration {label}".rstrip())
        rows = {c: i for i, c in enumerate(conns)}
        for conn in conns:
            part = points[points["conn_id"] == conn]
            ax_raster.vlines(part["t_s"], rows[conn] - 0.35, rows[conn] + 0.35,
                             color=host_color(conn_host.get(conn, "")), linewidth=0.6, rasterized=True)
            _label_gap(ax_raster, part["t_s"], rows[conn])
        for _, err in errors.iterrows():
            ax_raster.plot(float(err["t_s"]), rows[err["conn_id"]], marker="X", color=BROKEN_COLOR, markersize=9,
                           linestyle="")
            ax_raster.annotate(str(err["event"]), (float(err["t_s"]), rows[err["conn_id"]]), xytext=(6, 0),
                               textcoords="offset points", va="center", fontsize=8.5, color=BROKEN_COLOR)
        ax_raster.set_yticks(range(len(conns)), [f"conn {int(c)} · {conn_host.get(c, '?')}" for c in conns],
                             fontsize=9)
        ax_raster.set_ylim(-0.7, len(conns) - 0.3)
        ax_raster.invert_yaxis()
        ax_raster.grid(axis="y", visible=False)
        ax_raster.set_ylabel("replies")
        ax_raster.set_xlabel("time since migration start (s)")
        fig.tight_layout()
        data = {"": points, PHASES_PART: phases, ERRORS_PART: errors}
        return save_figure(fig, out_dir, name, data)
