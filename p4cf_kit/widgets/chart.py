"""The pool panel's live chart, rendered to PNG bytes for an ipywidgets.Image.

Why PNG bytes and an object-oriented Figure (no pyplot): the chart is redrawn from
the sampler's thread every second; pyplot keeps global state and the kit selects
the Agg backend, so a widget Image that swaps its bytes is what works in a live
JupyterLab and in a headless run alike.

What it draws is only what was measured (widgets.sampler): each rate is a step over
the interval it was measured in, and an interval without a measurement (a backend
outside the pool, a failed read) stays empty, never bridged. A backend's history is
drawn as it was then: its steps exist only where it was in the pool. Lines of equal
rates stay visible (each backend's line is narrower than the one drawn before it),
marker labels are placed in rows that never overlap one another, the data or the
legend, and before any packet has reached a backend the chart says it is waiting.
"""

from __future__ import annotations

import io
import math

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from p4cf_kit.plots.markers import LABEL_ROW_PT, place_marker_labels
from p4cf_kit.plots.style import host_color, host_sort_key, nested_widths

WAITING_TEXT = "waiting for traffic: no packet has reached a backend yet"
IDLE_TEXT = "waiting for traffic: no packet reached a backend in the last {window:.0f} s"
RATE_GID = "rate:"        # gid prefix of a backend's step artists (tests read what is drawn)
WAITING_GID = "waiting"


def runs(part: pd.DataFrame) -> list[pd.DataFrame]:
    """Split one backend's rows (sorted by t_s) where an interval does not start where the last ended."""
    out: list[pd.DataFrame] = []
    start = 0
    ends = part["t_s"].to_numpy()
    froms = part["t_from_s"].to_numpy()
    for k in range(1, len(part)):
        if not math.isclose(froms[k], ends[k - 1], rel_tol=0, abs_tol=1e-6):
            out.append(part.iloc[start:k])
            start = k
    if len(part):
        out.append(part.iloc[start:])
    return out


def live_rates_figure(rates: pd.DataFrame, markers: pd.DataFrame, pool: list[str],
                      window_s: float = 60.0, now_s: float | None = None) -> Figure:
    """Packets/s per backend over the last `window_s` seconds, markers as labelled dashed lines.

    `rates`: t_from_s, t_s, host, packets_per_s (CounterSampler.rates); `markers`: t_s, label;
    `pool`: the pool now (the legend says which drawn backends have left it)."""
    fig = Figure(figsize=(7.5, 3.2), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    times = [*rates["t_s"], *markers["t_s"]] if len(rates) or len(markers) else []
    now = now_s if now_s is not None else (max(times) if times else 0.0)
    lo = max(0.0, now - window_s)
    hi = max(now, lo + 10.0)
    shown = rates[rates["t_s"] > lo]
    measured = bool(len(shown)) and float(shown["packets_per_s"].max()) > 0
    ax.set_xlim(lo, hi + 0.02 * (hi - lo))
    ax.set_xlabel("time since the panel opened (s)")
    ax.set_ylabel("packets/s to backend")
    ax.set_title("Switch counters, live: packets per second to each backend", fontsize=10, fontweight="bold")
    ax.grid(alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    handles: list[Line2D] = []
    if measured:
        hosts = sorted(set(shown["host"]), key=host_sort_key)
        widths = nested_widths(hosts, 1.6)
        for k, host in enumerate(hosts):
            part = shown[shown["host"] == host].sort_values("t_s")
            for run in runs(part):
                edges = [max(float(run["t_from_s"].iloc[0]), lo), *run["t_s"].astype(float)]
                ax.stairs(run["packets_per_s"].to_numpy(dtype=float), edges, baseline=None,
                          color=host_color(host), linewidth=widths[host], zorder=2 + k, gid=f"{RATE_GID}{host}")
            label = host if host in pool else f"{host} (not in the pool now)"
            handles.append(Line2D([], [], color=host_color(host), linewidth=widths[host], label=label))
        top = float(shown["packets_per_s"].max())
    else:
        ax.set_yticks([])
        earlier = bool(len(rates)) and float(rates["packets_per_s"].max()) > 0
        ax.text(0.5, 0.45, IDLE_TEXT.format(window=window_s) if earlier else WAITING_TEXT, transform=ax.transAxes,
                ha="center", va="center", color="#555555", fontsize=10, gid=WAITING_GID)
        top = 1.0
    ax.set_ylim(0, top * 1.15)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
                  title="backend", title_fontsize=8)
    fig.tight_layout()
    rows = place_marker_labels(fig, ax, markers[(markers["t_s"] >= lo) & (markers["t_s"] <= hi)]
                                if len(markers) else markers)
    if rows and measured:  # headroom above the data for the label rows
        free = 1.0 - (rows * LABEL_ROW_PT + 6) * fig.dpi / 72 / ax.get_window_extent().height
        ax.set_ylim(0, top / max(free - 0.06, 0.3))
    return fig


def live_rates_png(rates: pd.DataFrame, markers: pd.DataFrame, pool: list[str], window_s: float = 60.0,
                   now_s: float | None = None) -> bytes:
    """`live_rates_figure` as PNG bytes for a widget Image."""
    fig = live_rates_figure(rates, markers, pool, window_s, now_s)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
