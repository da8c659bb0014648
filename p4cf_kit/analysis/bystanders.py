"""How much a migration delays the connections it does not move ("bystanders").

Why not the gap between replies: the client sends open loop at a fixed rate, so an
undisturbed connection at 50 requests/s already has 20 ms between replies; the longest gap
in a migration's window is that interval plus jitter, and reads as a 20 ms stall that is
not there. What a bystander feels is the extra time its requests take: per connection and
migration, the longest reply time (rtt) of the requests in flight during the migration
(sent or answered between t_start and t_end) minus that connection's normal reply time
(median rtt outside every migration's window).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from p4cf_kit.analysis.client_log import replies
from p4cf_kit.analysis.downtime import DEFAULT_MARGIN_S, downtime_for_migrations
from p4cf_kit.analysis.phases import record_window_ns

NS = 1_000_000_000
BYSTANDER_COLUMNS: tuple[str, ...] = ("migration", "conn_id", "host", "normal_rtt_ms", "max_rtt_ms",
                                      "extra_ms", "requests")


def bystander_delays(log: pd.DataFrame, phases: pd.DataFrame,
                     margin_s: float = DEFAULT_MARGIN_S) -> pd.DataFrame:
    """Extra reply time of every connection a migration did not move (see module doc).

    `phases` are the migration records (successful ones count). Columns: BYSTANDER_COLUMNS.
    """
    ok = phases[phases["ok"]] if "ok" in phases else phases
    rep = replies(log)[["conn_id", "host", "send_ns", "recv_ns"]].copy()
    rep["rtt_ms"] = (rep["recv_ns"].astype("int64") - rep["send_ns"].astype("int64")) / 1e6
    windows = [record_window_ns(r) for _, r in ok.iterrows()]
    margin = int(margin_s * NS)
    quiet = np.ones(len(rep), dtype=bool)
    for start, end in windows:
        quiet &= ~((rep["recv_ns"] >= start - margin) & (rep["send_ns"] <= end + margin)).to_numpy()
    normal = rep[quiet].groupby("conn_id")["rtt_ms"].median()
    moved = downtime_for_migrations(log, ok, margin_s)
    rows = []
    for (_, record), (start, end) in zip(ok.iterrows(), windows):
        k = int(record["migration"])
        mine = moved[moved["migration"] == k]
        bystanders = set(mine.loc[~mine["migrated"], "conn_id"])
        during = rep[(rep["recv_ns"] >= start) & (rep["send_ns"] <= end) & rep["conn_id"].isin(bystanders)]
        for conn_id, part in during.groupby("conn_id"):
            base = float(normal.get(conn_id, np.nan))
            worst = float(part["rtt_ms"].max())
            rows.append({"migration": k, "conn_id": int(conn_id), "host": str(part["host"].iloc[0]),
                         "normal_rtt_ms": base, "max_rtt_ms": worst, "extra_ms": worst - base,
                         "requests": int(len(part))})
    return pd.DataFrame(rows, columns=list(BYSTANDER_COLUMNS))
