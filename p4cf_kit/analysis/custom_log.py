"""A custom workload's own client log (its per-request CSV) turned into the kit's client log.

Why a converter and not a second analysis: every figure and number reads the client log
(client_log.CLIENT_LOG_COLUMNS), so the user's CSV is mapped onto it once and the rest of
the kit treats a custom run like any other.

The user's CSV, one row per request (README "Workloads" documents it):

    conn_id   required  which long-lived connection sent it (an integer)
    send_ns   required  when it was sent, CLOCK_REALTIME ns (time.time_ns())
    recv_ns   required  when its reply came (empty when it never came)
    op        optional  the operation (GET, SET, ...), kept in the log's `op`
    status    optional  "ok" (or empty) for a good reply; anything else ends the connection as
                        `error:<status>` (e.g. reset, timeout)
    host      optional  the backend that answered, when the application says so
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from p4cf_kit.analysis.client_log import typed_client_log

REQUIRED_COLUMNS: tuple[str, ...] = ("conn_id", "send_ns", "recv_ns")
OPTIONAL_COLUMNS: tuple[str, ...] = ("op", "status", "host")


def client_log_from_custom(frame: pd.DataFrame, source: str = "custom CSV") -> pd.DataFrame:
    """The client log a custom client's CSV stands for (ValueError naming missing columns)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: the custom client's CSV lacks column(s) {', '.join(missing)}; it needs "
                         f"{', '.join(REQUIRED_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)}), see README "
                         "'Workloads'")
    df = frame.copy()
    for column in OPTIONAL_COLUMNS:
        if column not in df.columns:
            df[column] = ""
    df["status"] = df["status"].fillna("").astype(str).str.strip().replace({"ok": ""})
    send = pd.to_numeric(df["send_ns"], errors="coerce")
    recv = pd.to_numeric(df["recv_ns"], errors="coerce")
    ok = (df["status"] == "") & recv.notna()
    df["seq"] = df.groupby("conn_id").cumcount() + 1
    out = pd.DataFrame({
        "conn_id": df["conn_id"], "seq": df["seq"], "send_ns": send, "recv_ns": recv.where(ok),
        "rtt_ms": ((recv - send) / 1e6).where(ok), "host": df["host"].fillna("").astype(str),
        "event": ["reply" if good else f"error:{status or 'timeout'}" for good, status in zip(ok, df["status"])],
        "t_ns": recv.where(recv.notna(), send), "op": df["op"].fillna("").astype(str),
        "detail": "",
    })
    return typed_client_log(out.sort_values("t_ns", kind="stable"))


def load_custom_log(path: str | Path) -> pd.DataFrame:
    return client_log_from_custom(pd.read_csv(path, dtype=str, keep_default_na=False), str(path))


def summary_from_log(log: pd.DataFrame) -> dict[str, Any]:
    """A client summary (the shape of tcp_client's) from a converted log: opened, broken, sent, received."""
    conns = sorted(int(c) for c in log["conn_id"].dropna().unique())
    errors = log[log["event"].str.startswith("error:").fillna(False)]
    broken = sorted(int(c) for c in errors["conn_id"].dropna().unique())
    replies = log[log["event"] == "reply"]
    return {"totals": {"opened": len(conns), "failed_to_open": 0, "broken": len(broken),
                       "sent": len(log), "received": len(replies), "stalls": 0, "unanswered": 0},
            "connections": [{"conn_id": c, "error": "error" if c in broken else None} for c in conns]}
