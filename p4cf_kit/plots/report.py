"""All figures of a run from its data: analysis first, then every plot function.

`figures_from_frames` takes DataFrames (a notebook's or the lab's); `figures_from_raw`
reads them from a results folder's raw/ (layout in p4cf_kit.results).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from p4cf_kit import analysis as an
from p4cf_kit import results
from p4cf_kit.plots import distribution, downtime, latency, phases, summary, survival, throughput, timeline
from p4cf_kit.plots.export import FigureFiles


def figures_from_frames(log: pd.DataFrame, out_dir: str | Path, counters: pd.DataFrame | None = None,
                        migrations: pd.DataFrame | None = None, markers: pd.DataFrame | None = None,
                        margin_s: float = 2.0, bin_s: float = 1.0,
                        tolerance: float = an.distribution.DEFAULT_TOLERANCE,
                        host_aliases: Mapping[str, str] | None = None) -> list[FigureFiles]:
    """Draw every figure the data allows into `out_dir`.

    `log`: client log; `counters`: switch counter reads; `migrations`: phase table
    (analysis.phases_frame); `markers`: extra t_ns,label markers (pool changes);
    `host_aliases`: switch host -> backend id, when counters name locations.
    Figures about migrations are skipped when there were none.
    """
    out = Path(out_dir)
    t0 = an.experiment_start_ns(log)
    written = [distribution.plot_distribution(
        an.distribution_figure_data(an.client_distribution(log),
                                    an.switch_distribution(counters) if counters is not None and not counters.empty
                                    else None, host_aliases), out, tolerance=tolerance)]
    marks = [an.migration_markers(migrations, t0)] if migrations is not None and not migrations.empty else []
    if markers is not None and not markers.empty:
        marks.append(pd.DataFrame({"t_s": (markers["t_ns"] - t0) / 1e9, "label": markers["label"]}))
    marker_frame = pd.concat(marks, ignore_index=True) if marks else None
    written.append(throughput.plot_throughput(an.throughput_per_backend(log, bin_s, t0), marker_frame, out))
    downtimes = None
    if migrations is not None and not migrations.empty:
        downtimes = an.downtime_for_migrations(log, migrations, margin_s)
        for _, record in migrations.iterrows():
            k = int(record["migration"])
            label = an.migration_label(record)
            per_conn = downtimes[downtimes["migration"] == k].drop(columns="migration").assign(label=label)
            written.append(downtime.plot_downtime_per_connection(per_conn, out, f"{downtime.CONNECTIONS_NAME}-m{k}"))
            written.append(timeline.plot_client_timeline(
                an.timeline_points(log, record, margin_s), an.timeline_phases(record), out, f"{timeline.NAME}-m{k}",
                errors=an.timeline_errors(log, record, margin_s)))
        written.append(downtime.plot_downtime_cdf(downtimes, out))
        written.append(phases.plot_phase_breakdown(an.phase_breakdown(migrations), out))
        surv = an.survival_per_migration(downtimes)
        labels = {int(r["migration"]): an.migration_label(r) for _, r in migrations.iterrows()}
        written.append(survival.plot_survival(surv.assign(label=surv["migration"].map(labels)), out))
        if "op" in log and log["op"].fillna("").ne("").any():  # a request/response workload: latency per op
            written.append(latency.plot_latency_around_migrations(an.latency_bins_around(log, migrations), out))
    written.append(summary.plot_summary_table(an.summary_table(downtimes, migrations), out))
    return written


def figures_from_raw(folder: results.ResultsFolder, **options: Any) -> list[FigureFiles]:
    """Read raw/ of a results folder and draw every figure into its figures/."""
    log = an.load_client_log(folder.raw(results.CLIENT_LOG))
    counters_path = folder.raw(results.SWITCH_COUNTERS)
    counters = pd.read_csv(counters_path) if counters_path.exists() else None
    migrations_path = folder.raw(results.MIGRATIONS)
    migrations = an.phases_frame(json.loads(migrations_path.read_text())) if migrations_path.exists() else None
    markers_path = folder.raw(results.MARKERS)
    markers = pd.read_csv(markers_path) if markers_path.exists() else None
    return figures_from_frames(log, folder.figures_dir, counters, migrations, markers, **options)
