"""What the client saw around one migration, on a time axis starting at the migration."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from p4cf_kit.analysis.client_log import error_events, replies
from p4cf_kit.analysis.phases import migration_label, phase_windows, record_window_ns

NS = 1_000_000_000
DEFAULT_MARGIN_S = 2.0


def _around_migration(events: pd.DataFrame, time_col: str, record: Mapping[str, Any] | pd.Series,
                      margin_s: float) -> tuple[pd.DataFrame, pd.Series]:
    """The rows of `events` within the migration ± margin, and their `time_col` in s from its start.

    Replies and errors are cut and shifted the same way, so both plots share one time axis.
    """
    t0, t_end = record_window_ns(record)
    lo, hi = t0 - int(margin_s * NS), t_end + int(margin_s * NS)
    inside = events[(events[time_col] >= lo) & (events[time_col] <= hi)]
    return inside, (inside[time_col].astype("int64") - t0) / NS


def timeline_points(log: pd.DataFrame, record: Mapping[str, Any] | pd.Series,
                    margin_s: float = DEFAULT_MARGIN_S) -> pd.DataFrame:
    """Replies received within the migration ± margin. Columns: t_s, conn_id, host, rtt_ms, server_ip."""
    rep, t_s = _around_migration(replies(log), "recv_ns", record, margin_s)
    return pd.DataFrame({"t_s": t_s, "conn_id": rep["conn_id"],
                         "host": rep["host"], "rtt_ms": rep["rtt_ms"].astype("float64"),
                         "server_ip": rep["server_ip"]}).reset_index(drop=True)


def timeline_phases(record: Mapping[str, Any] | pd.Series) -> pd.DataFrame:
    """Phase windows relative to the migration start. Columns: phase, start_s, end_s, label."""
    t0 = int(record["t_start_ns"])
    windows = phase_windows(record)
    return pd.DataFrame({"phase": windows["phase"], "start_s": (windows["start_ns"] - t0) / NS,
                         "end_s": (windows["end_ns"] - t0) / NS, "label": migration_label(record)})


def timeline_errors(log: pd.DataFrame, record: Mapping[str, Any] | pd.Series,
                    margin_s: float = DEFAULT_MARGIN_S) -> pd.DataFrame:
    """Errors within the migration ± margin. Columns: t_s, conn_id, event."""
    err, t_s = _around_migration(error_events(log), "t_ns", record, margin_s)
    return pd.DataFrame({"t_s": t_s, "conn_id": err["conn_id"],
                         "event": err["event"]}).reset_index(drop=True)
