"""Every figure family, and redrawing a figures folder from its CSVs alone.

A figure file is named after its family, with `-m<k>` for per-migration ones
(`timeline-m2.png`). Its CSVs are what the plot function took, so reading them
back and calling the function again gives the same figure.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from p4cf_kit.plots import distribution, downtime, latency, phases, summary, survival, throughput, timeline, topology
from p4cf_kit.plots.export import MAIN_PART, FigureFiles, read_parts

Redraw = Callable[[dict[str, pd.DataFrame], Path, str], FigureFiles]


@dataclass(frozen=True)
class FigureFamily:
    """How to redraw the figures of one family from their CSV parts."""

    name: str
    parts: tuple[str, ...]
    redraw: Redraw
    per_migration: bool = False


FAMILIES: tuple[FigureFamily, ...] = (
    FigureFamily(distribution.NAME, (), lambda d, out, n: distribution.plot_distribution(d[MAIN_PART], out, n)),
    FigureFamily(throughput.NAME, (throughput.MARKERS_PART,),
                 lambda d, out, n: throughput.plot_throughput(d[MAIN_PART], d[throughput.MARKERS_PART], out, n)),
    FigureFamily(downtime.CONNECTIONS_NAME, (),
                 lambda d, out, n: downtime.plot_downtime_per_connection(d[MAIN_PART], out, n), per_migration=True),
    FigureFamily(downtime.CDF_NAME, (), lambda d, out, n: downtime.plot_downtime_cdf(d[MAIN_PART], out, n)),
    FigureFamily(timeline.NAME, (timeline.PHASES_PART, timeline.ERRORS_PART),
                 lambda d, out, n: timeline.plot_client_timeline(d[MAIN_PART], d[timeline.PHASES_PART], out, n,
                                                                 errors=d[timeline.ERRORS_PART]), per_migration=True),
    FigureFamily(phases.NAME, (), lambda d, out, n: phases.plot_phase_breakdown(d[MAIN_PART], out, n)),
    FigureFamily(survival.NAME, (), lambda d, out, n: survival.plot_survival(d[MAIN_PART], out, n)),
    FigureFamily(summary.NAME, (), lambda d, out, n: summary.plot_summary_table(d[MAIN_PART], out, n)),
    FigureFamily(topology.NAME, (), lambda d, out, n: topology.plot_topology(d[MAIN_PART], out, n)),
    FigureFamily(latency.NAME, (), lambda d, out, n: latency.plot_latency_around_migrations(d[MAIN_PART], out, n)),
)


def family_of(name: str) -> FigureFamily | None:
    """The family a figure name belongs to (`timeline-m3` -> timeline), or None."""
    for family in FAMILIES:
        if name == family.name or (family.per_migration and re.fullmatch(rf"{re.escape(family.name)}-m\d+", name)):
            return family
    return None


def figure_names(figures_dir: str | Path) -> list[str]:
    """Names of the figures whose main CSV is in `figures_dir`, known families only."""
    names = [p.stem for p in sorted(Path(figures_dir).glob("*.csv")) if "." not in p.stem]
    return [n for n in names if family_of(n) is not None]


def regenerate(figures_dir: str | Path) -> list[FigureFiles]:
    """Redraw every figure in `figures_dir` from its CSVs; returns what was written."""
    out = Path(figures_dir)
    written = []
    for name in figure_names(out):
        family = family_of(name)
        assert family is not None
        written.append(family.redraw(read_parts(out, name, family.parts), out, name))
    return written
