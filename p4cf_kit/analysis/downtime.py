"""Client-visible downtime of a migration, per connection, and connection survival.

Downtime of a connection around one migration is the longest gap between two
consecutive replies on it, looking at replies within [t_start - margin,
t_end + margin] plus the last reply before and the first after that window (so a
gap longer than the window is still measured whole). At 50 requests/s the gap
of an undisturbed connection is about 20 ms, which is what connections on other
backends show.

A connection is `migrated` (served by the backend that moved) when its replies
name the moved backend (the record's optional `backend` field: the id its server
reports, else the record's `src`), or when the server address in its replies
(`server_ip`) changed across the migration: the server's host id lives in its
memory and moves with it, while its address follows the host network.

A connection counts for a migration when it was alive at the start (it had a
reply before t_start_ns and no error/close before it). It survived when it has
no `error:` event within the window and at least one reply after t_end_ns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from p4cf_kit.analysis.client_log import ERROR_PREFIX, replies
from p4cf_kit.analysis.phases import record_window_ns

NS = 1_000_000_000
DEFAULT_MARGIN_S = 2.0

DOWNTIME_COLUMNS: tuple[str, ...] = (
    "conn_id", "host", "migrated", "downtime_ms", "gap_start_ns", "gap_end_ns", "typical_gap_ms",
    "replies_before", "replies_after", "error", "survived",
)


def reply_gaps(log: pd.DataFrame) -> pd.DataFrame:
    """Every gap between consecutive replies of each connection.

    Columns: conn_id, host, gap_start_ns, gap_end_ns, gap_ms.
    """
    rep = replies(log)[["conn_id", "host", "recv_ns"]].sort_values(["conn_id", "recv_ns"], kind="stable")
    prev = rep.groupby("conn_id")["recv_ns"].shift(1)
    gaps = pd.DataFrame({"conn_id": rep["conn_id"], "host": rep["host"],
                         "gap_start_ns": prev, "gap_end_ns": rep["recv_ns"]}).dropna(subset=["gap_start_ns"])
    gaps["gap_ms"] = (gaps["gap_end_ns"] - gaps["gap_start_ns"]).astype("float64") / 1e6
    return gaps.reset_index(drop=True)


def downtime_per_connection(log: pd.DataFrame, t_start_ns: int, t_end_ns: int,
                            migrated_host: str | None = None,
                            margin_s: float = DEFAULT_MARGIN_S) -> pd.DataFrame:
    """Downtime and survival of each connection alive at `t_start_ns` (see module doc).

    `migrated_host` marks connections served by the backend that moved
    (`migrated` column). A broken connection has downtime_ms NaN and its error
    kind in `error`. Columns: DOWNTIME_COLUMNS.
    """
    margin = int(margin_s * NS)
    lo, hi = t_start_ns - margin, t_end_ns + margin
    rep = replies(log)[["conn_id", "host", "recv_ns", "server_ip"]]
    terminal = log[(log["event"] == "close") | log["event"].str.startswith(ERROR_PREFIX).fillna(False)]
    rows: list[dict[str, Any]] = []
    for conn_id, conn_replies in rep.groupby("conn_id"):
        times = conn_replies["recv_ns"].astype("int64").to_numpy()
        ends = terminal[terminal["conn_id"] == conn_id]
        if not (times < t_start_ns).any() or (ends["t_ns"] < t_start_ns).any():
            continue  # not alive when the migration started
        host = str(conn_replies["host"].mode().iloc[0])
        ip_before = _last_ip(conn_replies[conn_replies["recv_ns"] < t_start_ns])
        ip_after = _last_ip(conn_replies[conn_replies["recv_ns"] > t_end_ns].head(1))
        moved = host == migrated_host or (ip_before is not None and ip_after is not None and ip_before != ip_after)
        errors = ends[ends["event"].str.startswith(ERROR_PREFIX) & (ends["t_ns"] >= lo) & (ends["t_ns"] <= hi)]
        error = str(errors["event"].iloc[0])[len(ERROR_PREFIX):] if not errors.empty else ""
        after = int((times > t_end_ns).sum())
        survived = not error and after > 0
        first = max(int(np.searchsorted(times, lo, side="left")) - 1, 0)
        last = int(np.searchsorted(times, hi, side="right")) + 1
        window = times[first:last]
        diffs = np.diff(window)
        row: dict[str, Any] = {
            "conn_id": int(conn_id), "host": host, "migrated": moved,
            "downtime_ms": np.nan, "gap_start_ns": pd.NA, "gap_end_ns": pd.NA,
            "typical_gap_ms": float(np.median(np.diff(times))) / 1e6 if len(times) > 1 else np.nan,
            "replies_before": int((times < t_start_ns).sum()), "replies_after": after,
            "error": error, "survived": survived,
        }
        if survived and len(diffs):
            i = int(np.argmax(diffs))
            row.update(downtime_ms=float(diffs[i]) / 1e6, gap_start_ns=int(window[i]), gap_end_ns=int(window[i + 1]))
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(DOWNTIME_COLUMNS))
    out["gap_start_ns"] = out["gap_start_ns"].astype("Int64")
    out["gap_end_ns"] = out["gap_end_ns"].astype("Int64")
    out["downtime_ms"] = out["downtime_ms"].astype("float64")
    out["host"] = out["host"].astype("string")
    out["migrated"] = out["migrated"].astype(bool)
    out["survived"] = out["survived"].astype(bool)
    return out.sort_values("conn_id").reset_index(drop=True)


def _last_ip(conn_replies: pd.DataFrame) -> str | None:
    ips = conn_replies["server_ip"].dropna()
    return str(ips.iloc[-1]) if not ips.empty else None


def downtime_for_migrations(log: pd.DataFrame, phases: pd.DataFrame,
                            margin_s: float = DEFAULT_MARGIN_S) -> pd.DataFrame:
    """downtime_per_connection for every migration in a phase table, with a `migration` column first."""
    parts = []
    for _, record in phases.iterrows():
        part = downtime_for_record(log, record, margin_s)
        part.insert(0, "migration", int(record["migration"]))
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=["migration", *DOWNTIME_COLUMNS])
    return pd.concat(parts, ignore_index=True)


def downtime_for_record(log: pd.DataFrame, record: Mapping[str, Any] | pd.Series,
                        margin_s: float = DEFAULT_MARGIN_S) -> pd.DataFrame:
    """downtime_per_connection for one phase record: its times, and the moved backend's id
    (the optional `backend` field, else `src`)."""
    backend = record.get("backend") if hasattr(record, "get") else None
    moved = str(backend) if backend is not None and not pd.isna(backend) and str(backend) else str(record["src"])
    start, end = record_window_ns(record)
    return downtime_per_connection(log, start, end, migrated_host=moved, margin_s=margin_s)


def survival_per_migration(downtimes: pd.DataFrame, migrated_only: bool = True) -> pd.DataFrame:
    """Survived and broken connection counts per migration.

    Input: downtime_for_migrations output. With `migrated_only`, only connections
    of the backend that moved count (the others are not at risk).
    Columns: migration, survived, broken, total.
    """
    frame = downtimes[downtimes["migrated"]] if migrated_only else downtimes
    grouped = frame.groupby("migration")["survived"]
    out = pd.DataFrame({"survived": grouped.sum().astype(int), "total": grouped.size().astype(int)})
    # A migration whose backend had no connection still gets its (empty) row.
    out = out.reindex(sorted(set(downtimes["migration"])), fill_value=0)
    out.index.name = "migration"
    out["broken"] = out["total"] - out["survived"]
    return out.reset_index()[["migration", "survived", "broken", "total"]]


def migration_downtime_ms(downtimes: pd.DataFrame) -> float:
    """The client-visible downtime of one migration: the longest gap among surviving migrated connections."""
    frame = downtimes[downtimes["migrated"] & downtimes["survived"]]
    return float(frame["downtime_ms"].max()) if not frame.empty else float("nan")
