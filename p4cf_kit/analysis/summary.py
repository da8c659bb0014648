"""Summary statistics (n, median, p95, max) of the measured quantities, as one table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from p4cf_kit.analysis.phases import PHASE_COLUMNS

SUMMARY_COLUMNS: tuple[str, ...] = ("metric", "unit", "n", "median", "p95", "max")


def describe(values: pd.Series | np.ndarray | list[float]) -> dict[str, float]:
    """n, median, p95 and max of the finite values (NaN stats when there are none)."""
    arr = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce").dropna(), dtype=float)
    if arr.size == 0:
        return {"n": 0, "median": float("nan"), "p95": float("nan"), "max": float("nan")}
    return {"n": int(arr.size), "median": float(np.median(arr)), "p95": float(np.percentile(arr, 95)),
            "max": float(arr.max())}


def summary_table(downtimes: pd.DataFrame | None = None, phases: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per metric: downtime of migrated and of other connections, survival, each phase.

    Phase rows cover successful migrations only (failed ones were rolled back).

    `downtimes` is downtime_for_migrations output; `phases` a phase table.
    Columns: SUMMARY_COLUMNS.
    """
    rows: list[dict[str, object]] = []
    if downtimes is not None and not downtimes.empty:
        moved = downtimes[downtimes["migrated"]]
        rows.append({"metric": "downtime per connection, moved backend", "unit": "ms",
                     **describe(moved["downtime_ms"])})
        rows.append({"metric": "downtime per connection, other backends", "unit": "ms",
                     **describe(downtimes[~downtimes["migrated"]]["downtime_ms"])})
        if "migration" in moved.columns and not moved.empty:
            broken = (~moved["survived"]).groupby(moved["migration"]).sum()
            rows.append({"metric": "connections broken per migration", "unit": "count", **describe(broken)})
    if phases is not None and not phases.empty:
        ok = phases[phases["ok"]]
        for column in (*PHASE_COLUMNS, "total_s"):
            name = column[:-2]
            rows.append({"metric": f"{name} time" if name != "total" else "migration total time",
                         "unit": "s", **describe(ok[column])})
        sizes_mib = ok["checkpoint_bytes"].astype(float) / 2**20
        rows.append({"metric": "checkpoint size", "unit": "MiB", **describe(sizes_mib)})
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
