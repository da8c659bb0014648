"""Figure: the lab as built: hosts on their own networks, one switch port each, the VIP.

Why a figure and not ASCII art: the notebook's first picture should say at a glance
which hosts are backends right now (read from the switch), which one idles as a
migration target, and where the VIP lives. The data is one row per host, so the
figure can be redrawn from its CSV like every other figure of the kit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.patches import FancyBboxPatch

from p4cf_kit.plots.export import FigureFiles, save_figure
from p4cf_kit.plots.style import figure_style, host_color, host_sort_key

NAME = "topology"
COLUMNS: tuple[str, ...] = ("host", "role", "in_pool", "ip", "subnet", "mac", "port", "network", "vip", "vip_port")
ROLE_TEXT = {"client": "client", "backend": "backend", "idle": "idle (migration target)"}


def topology_frame(hosts: Sequence[Mapping[str, Any]], vip: str, vip_port: int, pool: Sequence[str],
                   network_names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per host (COLUMNS). `hosts` as in config_to_dict(cfg)["hosts"]; `pool` the hosts
    the switch balances over now, so a host added at run time shows as a backend."""
    rows = []
    for h in hosts:
        name = str(h["name"])
        role = "client" if h["role"] == "client" else ("backend" if name in pool else "idle")
        rows.append({"host": name, "role": role, "in_pool": name in pool, "ip": str(h["ip"]),
                     "subnet": str(h["subnet"]), "mac": str(h["mac"]), "port": int(h["port"]),
                     "network": (network_names or {}).get(name, ""), "vip": vip, "vip_port": int(vip_port)})
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.sort_values("host", key=lambda s: s.map(host_sort_key)).reset_index(drop=True)


def plot_topology(data: pd.DataFrame, out_dir: str | Path, name: str = NAME, title: str = "") -> FigureFiles:
    """Hosts in a row above the switch, each with its network and switch port; backends coloured."""
    data = data.assign(host=data["host"].astype(str))
    n = len(data)
    vip = f"{data['vip'].iloc[0]}:{int(data['vip_port'].iloc[0])}" if n else "?"
    with figure_style():
        fig, ax = plt.subplots(figsize=(max(7.5, 2.3 * n + 1.0), 5.2))
        ax.set_xlim(-0.6, n - 0.4)
        ax.set_ylim(0.0, 3.5)
        ax.axis("off")
        sw_w = max(n - 1.0, 1.2)
        ax.add_patch(FancyBboxPatch(((n - 1) / 2 - sw_w / 2, 0.1), sw_w, 0.7, boxstyle="round,pad=0.05",
                                    facecolor="#F2F2F2", edgecolor="#333333", linewidth=1.5))
        ax.text((n - 1) / 2, 0.55, "s1: P4 switch (load_balance.p4)", ha="center", va="center",
                fontsize=11, fontweight="bold")
        ax.text((n - 1) / 2, 0.28, f"VIP {vip} → hash of the 5-tuple → a backend", ha="center",
                va="center", fontsize=9.5)
        for x, (_, h) in enumerate(data.iterrows()):
            role = str(h["role"])
            colour = host_color(h["host"]) if role == "backend" else ("#999999" if role == "client" else "#FFFFFF")
            text_colour = "white" if role in ("backend", "client") else "#333333"
            ax.plot([x, x], [0.85, 2.05], color="#555555", linewidth=1.4, zorder=0)
            ax.text(x + 0.05, 1.05, f"port {int(h['port'])}", fontsize=9, va="center", color="#333333")
            net = str(h["network"]) if pd.notna(h["network"]) and str(h["network"]) else "network"
            ax.text(x, 1.55, f"{net}\n{h['subnet']}", ha="center", va="center", fontsize=8.5, color="#333333",
                    bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "#AAAAAA"})
            ax.add_patch(FancyBboxPatch((x - 0.42, 2.1), 0.84, 1.3, boxstyle="round,pad=0.04",
                                        facecolor=colour, edgecolor="#333333", linewidth=1.2,
                                        linestyle="-" if role != "idle" else "--"))
            ax.text(x, 3.1, str(h["host"]), ha="center", va="center", fontsize=13, fontweight="bold",
                    color=text_colour)
            ax.text(x, 2.72, ROLE_TEXT.get(role, role).replace(" (", "\n("), ha="center", va="center",
                    fontsize=9, color=text_colour)
            ax.text(x, 2.3, str(h["ip"]), ha="center", va="center", fontsize=9, color=text_colour)
        ax.set_title(title or "Lab topology: each host on its own network, s1 the only path between them",
                     fontsize=12)
        fig.tight_layout()
        return save_figure(fig, out_dir, name, data)
