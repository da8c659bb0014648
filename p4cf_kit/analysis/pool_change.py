"""What a pool change does to the client's open connections, from the client log.

Why: a pool change rewrites which backend a hash slot points at. A connection whose slot
now names another backend is sent there, and that backend answers with a reset: it is
broken, not moved. The panel says so before (from the hash, control.flow_hash) and after
(from what the client logged): kept, moved to another backend, or ended by an error.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from p4cf_kit.analysis.client_log import ERROR_PREFIX

OPEN_COLUMNS = ("conn_id", "src_ip", "src_port", "dst_ip", "dst_port", "host")
EFFECT_COLUMNS = ("conn_id", "host_before", "predicted", "host_after", "outcome")
KEPT, MOVED, WAITING = "kept", "moved", "no reply yet"


def open_connections(log: pd.DataFrame, at_ns: int) -> pd.DataFrame:
    """Connections open at `at_ns` (opened before, not closed or failed before) and the backend of
    their last reply before it (NA when none had come yet)."""
    if log.empty:
        return pd.DataFrame(columns=list(OPEN_COLUMNS))
    before = log[log["t_ns"] <= at_ns]
    opened = before[before["event"] == "open"].drop_duplicates("conn_id", keep="last")
    ended = set(before.loc[(before["event"] == "close") | before["event"].str.startswith(ERROR_PREFIX).fillna(False),
                           "conn_id"])
    last_host = before[before["event"] == "reply"].sort_values("t_ns").groupby("conn_id")["host"].last()
    out = opened[~opened["conn_id"].isin(ended)][["conn_id", "src_ip", "src_port", "dst_ip", "dst_port"]].copy()
    out["host"] = out["conn_id"].map(last_host).astype("string")
    return out.sort_values("conn_id").reset_index(drop=True)


def change_effect(log: pd.DataFrame, at_ns: int, predicted: Mapping[int, str] | None = None) -> pd.DataFrame:
    """Per connection open at `at_ns`: its backend before, the predicted one, the backend of its
    last reply after (none when it broke), and the outcome: kept, moved, `error:<kind>` (reset,
    eof...) or no reply yet."""
    conns = open_connections(log, at_ns)
    after = log[log["t_ns"] > at_ns].sort_values("t_ns")
    rows = []
    for conn in conns.itertuples(index=False):
        mine = after[after["conn_id"] == conn.conn_id]
        failed = mine[mine["event"].str.startswith(ERROR_PREFIX).fillna(False)]
        replies = mine[mine["event"] == "reply"]
        host_after = str(replies["host"].iloc[-1]) if len(replies) else None
        if len(failed):  # replies before the error were in flight from the old backend: not "after"
            outcome, host_after = str(failed["event"].iloc[0]), None
        elif host_after is None:
            outcome = WAITING
        else:
            outcome = KEPT if host_after == conn.host else MOVED
        rows.append({"conn_id": int(conn.conn_id), "host_before": conn.host,
                     "predicted": (predicted or {}).get(int(conn.conn_id)), "host_after": host_after,
                     "outcome": outcome})
    return pd.DataFrame(rows, columns=list(EFFECT_COLUMNS))


def describe_effect(effect: pd.DataFrame) -> str:
    """One sentence: how many open connections kept their backend, moved, or broke (and how)."""
    if effect.empty:
        return "no client connection was open"
    parts = []
    kept = effect[effect["outcome"] == KEPT]
    if len(kept):
        parts.append(f"{len(kept)} kept their backend")
    moved = effect[effect["outcome"] == MOVED]
    if len(moved):
        parts.append(f"{len(moved)} moved to another backend and go on")
    broken = effect[effect["outcome"].str.startswith(ERROR_PREFIX)]
    if len(broken):
        kinds = ", ".join(f"{n} {k[len(ERROR_PREFIX):]}" for k, n in broken["outcome"].value_counts().items())
        was = ", ".join(f"{n} on {h}" for h, n in broken["host_before"].fillna("?").value_counts().sort_index().items())
        parts.append(f"{len(broken)} broke ({kinds}; they were {was})")
    waiting = effect[effect["outcome"] == WAITING]
    if len(waiting):
        parts.append(f"{len(waiting)} had no reply yet")
    return f"of {len(effect)} open connections: " + ", ".join(parts) + " (client log)"
