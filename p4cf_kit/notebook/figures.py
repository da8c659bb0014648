"""The notebooks' figures and results folders: draw with p4cf_kit.plots, show the PNGs.

Why: each notebook exports into a self-describing results folder (p4cf_kit.results);
these put the data in raw/, draw with the plots room, and display what was saved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from p4cf_kit import analysis as an
from p4cf_kit import results
from p4cf_kit.notebook.records import phase_table
from p4cf_kit.plots.export import FigureFiles

if TYPE_CHECKING:
    from p4cf_kit.lab import Lab


def results_folder(what: str, lab: Lab, notes: str = "") -> results.ResultsFolder:
    """A results folder for this notebook's run, holding the lab's config."""
    from p4cf_kit.lab import config_to_dict_source
    return results.ResultsFolder.create(what, config_to_dict_source(lab.config), notes=notes)


def show(files: FigureFiles | Sequence[FigureFiles], width: int | None = None) -> None:
    """Display figures (their PNGs) in the notebook, and say where all their files are."""
    from IPython.display import Image, display
    items = [files] if isinstance(files, FigureFiles) else list(files)
    for f in items:
        display(Image(filename=str(f.png), width=width))
    if items:
        print(f"saved {', '.join(f.name for f in items)} (PNG/SVG/PDF + CSV) in {items[0].png.parent}")


def load_balancing_figures(folder: results.ResultsFolder, before: pd.DataFrame, after: pd.DataFrame,
                           markers: pd.DataFrame | None = None) -> list[FigureFiles]:
    """Distribution (client log beside the switch counters' increase between two reads) and
    throughput per backend, from the client log in raw/; counters and markers are stored in raw/ too."""
    from p4cf_kit.plots import distribution, throughput
    log = an.load_client_log(folder.raw(results.CLIENT_LOG))
    counters = pd.concat([before, after], ignore_index=True)
    counters.to_csv(folder.raw(results.SWITCH_COUNTERS), index=False)
    switch = an.switch_distribution(counters, t_from_ns=int(before["t_ns"].min()))
    t0 = an.experiment_start_ns(log)
    marks = None
    if markers is not None and not markers.empty:
        markers.to_csv(folder.raw(results.MARKERS), index=False)
        marks = pd.DataFrame({"t_s": (markers["t_ns"] - t0) / 1e9, "label": markers["label"]})
    return [distribution.plot_distribution(an.distribution_figure_data(an.client_distribution(log), switch),
                                           folder.figures_dir, tolerance=an.distribution.DEFAULT_TOLERANCE),
            throughput.plot_throughput(an.throughput_per_backend(log, 1.0, t0), marks, folder.figures_dir)]


def pool_change_figures(folder: results.ResultsFolder, changes: Sequence[Mapping[str, Any]]) -> list[FigureFiles]:
    """Replies per second per backend over a run in which the pool changed (client log in raw/),
    each change marked; the changes (t_ns, label) are stored as raw/markers.csv."""
    from p4cf_kit.plots import throughput
    log = an.load_client_log(folder.raw(results.CLIENT_LOG))
    markers = pd.DataFrame(list(changes), columns=["t_ns", "label"])
    markers.to_csv(folder.raw(results.MARKERS), index=False)
    t0 = an.experiment_start_ns(log)
    marks = pd.DataFrame({"t_s": (markers["t_ns"] - t0) / 1e9, "label": markers["label"]})
    return [throughput.plot_throughput(an.throughput_per_backend(log, 1.0, t0), marks, folder.figures_dir)]


def distribution_check(folder: results.ResultsFolder) -> pd.DataFrame:
    """Client and switch shares per backend side by side, from the figure's data."""
    data = pd.read_csv(folder.figures_dir / "distribution.csv")
    wide = data.pivot_table(index="host", columns="source", values="fraction").fillna(0.0)
    table = an.compare_distributions(wide["client"].rename("fraction").reset_index(),
                                     wide["switch"].rename("fraction").reset_index())
    # the split is by connection (each sticks to one backend): say how many each backend got
    conns = an.client_distribution(an.load_client_log(folder.raw(results.CLIENT_LOG)))
    table.insert(1, "connections", table["host"].map(dict(zip(conns["host"], conns["connections"]))))
    return table


def migration_figures(folder: results.ResultsFolder, records: Sequence[Mapping[str, Any]],
                      margin_s: float = 2.0) -> list[FigureFiles]:
    """Every migration figure (downtime per connection, timeline, CDF, phases, survival, summary)
    from the client log in raw/ and the records, which are stored as raw/migrations.json."""
    from p4cf_kit.plots.report import figures_from_frames
    log = an.load_client_log(folder.raw(results.CLIENT_LOG))
    if not records:
        print("no migration was made: only the traffic figures are drawn")
        return figures_from_frames(log, folder.figures_dir, margin_s=margin_s)
    folder.write_migrations(records)
    return figures_from_frames(log, folder.figures_dir, migrations=phase_table(records), margin_s=margin_s)


def summary(folder: results.ResultsFolder) -> pd.DataFrame:
    """The summary table of a results folder (figures/summary.csv)."""
    path = folder.figures_dir / "summary.csv"
    return pd.read_csv(path).round(3) if path.exists() else pd.DataFrame()


def figures_in(folder: results.ResultsFolder, *names: str) -> list[FigureFiles]:
    """The figures `names` of a results folder (those that exist), for `show`."""
    from p4cf_kit.plots.export import FORMATS
    out = []
    for name in names:
        images = tuple(folder.figures_dir / f"{name}.{fmt}" for fmt in FORMATS)
        if images[0].exists():
            out.append(FigureFiles(name, images, (folder.figures_dir / f"{name}.csv",)))
    return out
