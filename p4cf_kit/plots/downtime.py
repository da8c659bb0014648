"""Figures: downtime per connection for one migration, and its CDF over many migrations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from p4cf_kit.plots.export import FigureFiles, save_figure
from p4cf_kit.plots.style import BROKEN_COLOR, figure_style, host_color, host_sort_key, new_figure, readable_log_axis

CONNECTIONS_NAME = "downtime-connections"
CDF_NAME = "downtime-cdf"


def _truthy(series: pd.Series) -> pd.Series:
    """Booleans that survive a CSV round trip ("True"/"False" strings)."""
    return series.map(lambda v: str(v).strip().lower() in ("true", "1")).astype(bool)


def plot_downtime_per_connection(data: pd.DataFrame, out_dir: str | Path, name: str = CONNECTIONS_NAME,
                                 label: str | None = None) -> FigureFiles:
    """Horizontal bars: the longest reply gap of each connection around one migration (log scale).

    `data`: analysis.downtime_per_connection output (conn_id, host, migrated,
    downtime_ms, typical_gap_ms, error, survived), optionally with a `label`
    column naming the migration (e.g. "m1 h2→h4") used in the title.
    """
    data = data.assign(host=data["host"].astype(str), migrated=_truthy(data["migrated"]),
                       survived=_truthy(data["survived"]), error=data["error"].astype("string").fillna("").astype(str))
    data = data.sort_values("conn_id", ascending=False)  # conn 0 at the top
    if not label and "label" in data.columns and len(data):
        label = str(data["label"].iloc[0])
    finite = data["downtime_ms"].dropna()
    right = float(finite.max()) * 4 if len(finite) else 1000.0
    with figure_style():
        fig, ax = new_figure((8.5, 0.42 * len(data) + 1.9))
        y = np.arange(len(data))
        ticks = [f"conn {int(c)} · {h}{' (moved)' if m else ''}"
                 for c, h, m in zip(data["conn_id"], data["host"], data["migrated"])]
        widths = data["downtime_ms"].fillna(0).to_numpy()
        ax.barh(y, widths, color=[host_color(h) for h in data["host"]], height=0.65)
        for yi, (_, row) in zip(y, data.iterrows()):
            if row["survived"]:
                ax.annotate(f"{row['downtime_ms']:,.0f} ms", (row["downtime_ms"], yi), xytext=(4, 0),
                            textcoords="offset points", va="center", fontsize=9)
            else:
                ax.annotate(f"✕ broken ({row['error'] or 'no reply after'})", (1, yi), xytext=(4, 0),
                            textcoords="offset points", va="center", fontsize=9, color=BROKEN_COLOR,
                            fontweight="bold")
        typical = float(np.nanmedian(data["typical_gap_ms"])) if data["typical_gap_ms"].notna().any() else None
        if typical:
            ax.axvline(typical, color="#555555", linestyle=":", linewidth=1)
            ax.annotate(f"usual gap {typical:.0f} ms", (typical, len(data) - 0.4), xytext=(3, 0),
                        textcoords="offset points", fontsize=8.5, color="#555555", va="bottom")
        readable_log_axis(ax, "x")
        ax.set_xlim(1, right)
        ax.set_ylim(-0.6, len(data) + 0.2)
        ax.set_yticks(y, ticks)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("longest gap between consecutive replies (ms, log scale)")
        ax.set_title(f"Downtime per connection{': migration ' + label if label else ''}")
        fig.tight_layout()
        return save_figure(fig, out_dir, name, data.sort_values("conn_id"))


def plot_downtime_cdf(data: pd.DataFrame, out_dir: str | Path, name: str = CDF_NAME) -> FigureFiles:
    """Empirical CDF of per-connection downtime over all migrations, one line per backend.

    `data`: analysis.downtime_for_migrations output. Migrated connections are
    drawn solid, the others (not moved) dashed; broken connections are counted
    in the legend, not drawn.
    """
    data = data.assign(host=data["host"].astype(str), migrated=_truthy(data["migrated"]),
                       survived=_truthy(data["survived"]))
    handles: list[Line2D] = []
    with figure_style():
        fig, ax = new_figure((8.5, 4.8))
        for moved in (True, False):
            for host in sorted(set(data.loc[data["migrated"] == moved, "host"]), key=host_sort_key):
                part = data[(data["host"] == host) & (data["migrated"] == moved)]
                values = np.sort(part.loc[part["survived"], "downtime_ms"].dropna().to_numpy())
                if values.size == 0:
                    continue
                frac = np.arange(1, values.size + 1) / values.size
                broken = int((~part["survived"]).sum())
                style = "-" if moved else "--"
                (line,) = ax.step(np.r_[values[0], values], np.r_[0, frac], where="post", color=host_color(host),
                                  linestyle=style, linewidth=2)
                median = float(np.median(values))
                ax.plot([median], [0.5], marker="o", color=host_color(host), markersize=6)
                what = "moved" if moved else "not moved"
                line.set_label(f"{host}, {what}: median {median:,.0f} ms, max {values.max():,.0f} ms "
                               f"({values.size} measured{f', {broken} broken' if broken else ''})")
                handles.append(line)
        ax.axhline(0.5, color="#999999", linewidth=0.8, linestyle=":")
        readable_log_axis(ax, "x")
        finite = data.loc[data["survived"], "downtime_ms"].dropna()
        if len(finite):
            ax.set_xlim(float(finite.min()) / 1.6, float(finite.max()) * 1.6)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("downtime per connection: longest reply gap (ms, log scale)")
        ax.set_ylabel("fraction of connections")
        n_migrations = data["migration"].nunique() if "migration" in data.columns else 1
        ax.set_title(f"Downtime over {n_migrations} migration{'s' if n_migrations != 1 else ''} (CDF)")
        ax.legend(handles=handles + [Line2D([], [], marker="o", linestyle="", color="#666666", label="median")],
                  loc="lower right", fontsize=9)
        fig.tight_layout()
        return save_figure(fig, out_dir, name, data)


__all__ = ["plot_downtime_per_connection", "plot_downtime_cdf"]
