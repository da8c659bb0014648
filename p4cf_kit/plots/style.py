"""One look for every figure: colours per host, per phase, fonts; figures on an Agg canvas.

A host keeps its colour in every figure (h2 is always blue), so a reader can move
from one figure to the next without rereading legends. Colours are the
Okabe-Ito palette, which stays distinguishable with colour-blindness.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.typing import RcKeyType

HOST_COLORS: dict[str, str] = {
    "h1": "#999999",  # the client
    "h2": "#0072B2",
    "h3": "#E69F00",
    "h4": "#009E73",
    "h5": "#CC79A7",
    "h6": "#56B4E9",
    "h7": "#D55E00",
    "h8": "#F0E442",
}
_SPARE = ("#882255", "#44AA99", "#332288", "#AA4499", "#117733", "#DDCC77")

PHASE_COLORS: dict[str, str] = {
    "checkpoint": "#4477AA",
    "rewrite": "#EE6677",
    "transfer": "#AA3377",
    "restore": "#228833",
    "switch": "#CCBB44",
    "other": "#BBBBBB",
}
SURVIVED_COLOR = "#4477AA"
BROKEN_COLOR = "#D55E00"
MARKER_COLOR = "#444444"  # vertical lines for migrations and pool changes

RC: dict[RcKeyType, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 11,
    "axes.titlesize": 13,
    "axes.titleweight": "bold",
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "legend.frameon": False,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "svg.hashsalt": "p4cf",  # stable SVG ids, so regenerated figures diff cleanly
    "svg.fonttype": "none",  # SVG text stays text: searchable and editable
    # PDF fonts as Type 3 (matplotlib's default): embedding Type 42 subsets fonts with
    # fontTools and triples the time to save. Set RC["pdf.fonttype"] = 42 for a
    # publisher that refuses Type 3.
    "pdf.fonttype": 3,
}


def host_color(host: str) -> str:
    """The colour of `host`: fixed for h1..h8, else a stable spare chosen by its number or name."""
    host = str(host)
    if host in HOST_COLORS:
        return HOST_COLORS[host]
    digits = re.findall(r"\d+", host)
    key = int(digits[-1]) if digits else sum(map(ord, host))
    return _SPARE[key % len(_SPARE)]


def phase_color(phase: str) -> str:
    """The colour of a migration phase (grey for unknown ones)."""
    return PHASE_COLORS.get(phase, PHASE_COLORS["other"])


def nested_widths(hosts: list[str], thinnest: float, step: float = 1.3) -> dict[str, float]:
    """Line widths that keep equal lines visible: each host's line is `step` narrower than the one
    drawn before it (drawn on top of it), so a line under another shows as its border."""
    return {h: thinnest + step * (len(hosts) - 1 - k) for k, h in enumerate(hosts)}


def host_sort_key(host: str) -> tuple[int, str]:
    """Order h2 before h10: by the host's number, then by name."""
    digits = re.findall(r"\d+", str(host))
    return (int(digits[-1]) if digits else 1 << 30, str(host))


@contextmanager
def figure_style() -> Iterator[None]:
    """Apply the kit's rcParams while a figure is drawn and saved."""
    with matplotlib.rc_context(RC):
        yield


def new_figure(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1, **subplots: Any) -> tuple[Figure, Any]:
    """A figure on its own Agg canvas, outside pyplot, and its axes (as `Figure.subplots` returns them).

    Why not pyplot: the figures are files. Outside pyplot nothing is kept open, nothing
    pops up in a notebook cell, the notebook's own backend is left alone, and drawing
    from a widget's thread is safe.
    """
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **subplots)


def agg_canvas(fig: Figure) -> FigureCanvasAgg:
    """The canvas that lays a figure's text out: Agg's, for `new_figure`'s figures and for the
    notebook backends (inline and ipympl draw on Agg) alike."""
    return cast(FigureCanvasAgg, fig.canvas)


def readable_log_axis(ax: Axes, axis: str = "x") -> None:
    """Log scale with ticks at 1-2-5 steps written as plain numbers (5, 20, 1,000), not powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    target.set_minor_formatter(NullFormatter())
