"""Figure: share of traffic per backend, client log beside switch counters."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from p4cf_kit.plots.export import FigureFiles, save_figure
from p4cf_kit.plots.style import figure_style, host_color, host_sort_key, new_figure

NAME = "distribution"
SOURCE_TITLES = {"client": "Client log (replies)", "switch": "Switch counters (packets)"}


def plot_distribution(data: pd.DataFrame, out_dir: str | Path, name: str = NAME,
                      tolerance: float | None = None) -> FigureFiles:
    """Bars of the share of traffic per host, one panel per source (client, switch).

    `data`: columns source, host, count, unit, fraction (analysis.distribution_figure_data).
    With `tolerance`, the title says whether every host agrees within it.
    """
    data = data.assign(host=data["host"].astype(str), source=data["source"].astype(str))
    sources = [s for s in SOURCE_TITLES if s in set(data["source"])] or sorted(set(data["source"]))
    hosts = sorted(set(data["host"]), key=host_sort_key)
    with figure_style():
        fig, axes = new_figure((4.2 * len(sources) + 0.6, 4.2), 1, len(sources), sharey=True, squeeze=False)
        top = max(float(data["fraction"].max()) * 100 * 1.22, 10.0)
        for ax, source in zip(axes[0], sources):
            part = data[data["source"] == source].set_index("host").reindex(hosts)
            shares = part["fraction"].fillna(0) * 100
            bars = ax.bar(hosts, shares, color=[host_color(h) for h in hosts], width=0.6)
            unit = str(part["unit"].dropna().iloc[0]) if part["unit"].notna().any() else ""
            for bar, share, count in zip(bars, shares, part["count"]):
                label = f"{share:.1f} %\n{int(count):,} {unit}" if pd.notna(count) else "–"
                ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                            va="bottom", fontsize=9, xytext=(0, 2), textcoords="offset points")
            ax.set_title(SOURCE_TITLES.get(source, source), fontsize=11)
            ax.set_xlabel("backend")
            ax.set_ylim(0, top)
            ax.grid(axis="x", visible=False)
        axes[0][0].set_ylabel("share of traffic (%)")
        title = "Traffic per backend"
        if tolerance is not None and set(sources) >= {"client", "switch"}:
            wide = data.pivot_table(index="host", columns="source", values="fraction").fillna(0)
            worst = float((wide["client"] - wide["switch"]).abs().max()) * 100
            verdict = "agree" if worst <= tolerance * 100 else "DISAGREE"
            title += f": sources {verdict} (largest difference {worst:.1f} pts, tolerance {tolerance * 100:g} pts)"
        fig.suptitle(title, fontsize=13, fontweight="bold")
        fig.tight_layout()
        return save_figure(fig, out_dir, name, data)
