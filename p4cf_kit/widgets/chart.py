"""The pool panel's live chart, rendered to PNG bytes for an ipywidgets.Image.

Why PNG bytes and an object-oriented Figure (no pyplot): the chart is redrawn from
the sampler's thread every second; pyplot keeps global state and the kit selects
the Agg backend, so a widget Image that swaps its bytes is what works in a live
JupyterLab and in a headless run alike.
"""

from __future__ import annotations

import io

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from p4cf_kit.plots.style import MARKER_COLOR, host_color, host_sort_key


def live_rates_png(rates: pd.DataFrame, markers: pd.DataFrame, pool: list[str], window_s: float = 60.0) -> bytes:
    """Packets/s per backend over the last `window_s` seconds, markers as dashed lines."""
    fig = Figure(figsize=(7.5, 3.0), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    now = float(rates["t_s"].max()) if len(rates) else 0.0
    lo = max(0.0, now - window_s)
    hosts = sorted(set(rates["host"]) | set(pool), key=host_sort_key)
    drawn = 0
    for host in hosts:
        part = rates[(rates["host"] == host) & (rates["t_s"] >= lo)].sort_values("t_s")
        if part.empty:
            continue
        label = host if host in pool else f"{host} (out of pool)"
        ax.plot(part["t_s"], part["packets_per_s"], color=host_color(host), linewidth=2, label=label,
                drawstyle="steps-post", linestyle="-" if host in pool else ":")
        drawn += 1
    for _, m in markers[markers["t_s"] >= lo].iterrows() if len(markers) else []:
        ax.axvline(float(m["t_s"]), color=MARKER_COLOR, linestyle="--", linewidth=1)
        ax.annotate(str(m["label"]), (float(m["t_s"]), 1.0), xycoords=("data", "axes fraction"), xytext=(3, -3),
                    textcoords="offset points", va="top", fontsize=8, color=MARKER_COLOR)
    ax.set_xlim(lo, max(now, lo + 10.0))
    ax.set_ylim(bottom=0, top=max(float(rates["packets_per_s"].max()) * 1.3 if len(rates) else 1.0, 1.0))
    ax.set_xlabel("time since the panel opened (s)")
    ax.set_ylabel("packets/s to backend")
    ax.set_title("Switch counters, live: packets per second to each backend", fontsize=10, fontweight="bold")
    ax.grid(alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if drawn:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, title="backend",
                  title_fontsize=8)
    else:
        ax.text(0.5, 0.5, "waiting for traffic through the switch…", transform=ax.transAxes, ha="center",
                va="center", color="#777777")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
