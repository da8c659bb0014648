"""The client's per-message CSV log as a typed DataFrame.

The log is written by `workload/tcp_client.py` (which cannot import the kit, and
this room may not import `workload`), so its columns are spelled out here too; a
test keeps the two equal. Every workload's client writes this log (`workload/rr_client.py`
too; a custom client's CSV is turned into it by `custom_log`), so one analysis serves all.
Times are CLOCK_REALTIME nanoseconds.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

CLIENT_LOG_COLUMNS: tuple[str, ...] = (
    "conn_id", "src_ip", "src_port", "dst_ip", "dst_port", "seq", "send_ns", "recv_ns", "rtt_ms",
    "host", "server_count", "event", "t_ns", "server_ip", "detail", "op",
)
#: Columns a log may lack (written by older clients): read as empty.
OPTIONAL_COLUMNS: tuple[str, ...] = ("op",)
CLIENT_LOG_DTYPES: dict[str, str] = {
    "conn_id": "Int64", "src_ip": "string", "src_port": "Int64", "dst_ip": "string", "dst_port": "Int64",
    "seq": "Int64", "send_ns": "Int64", "recv_ns": "Int64", "rtt_ms": "Float64", "host": "string",
    "server_count": "Int64", "event": "string", "t_ns": "Int64", "server_ip": "string", "detail": "string",
    "op": "string",
}
ERROR_PREFIX = "error:"


def load_client_log(path: str | Path) -> pd.DataFrame:
    """Read a client CSV (possibly still being written) into a typed DataFrame.

    A last line cut short by a live writer is dropped rather than failing the read.
    """
    frame = pd.read_csv(path, dtype="string", keep_default_na=False, na_values=[""], on_bad_lines="skip")
    missing = [c for c in CLIENT_LOG_COLUMNS if c not in frame.columns and c not in OPTIONAL_COLUMNS]
    if missing:
        raise ValueError(f"{path}: not a client log, columns missing: {missing}")
    return typed_client_log(frame)


def typed_client_log(frame: pd.DataFrame) -> pd.DataFrame:
    """Give a client-log frame (from CSV or built in memory) the documented dtypes."""
    out = pd.DataFrame(index=frame.index)
    for column in CLIENT_LOG_COLUMNS:
        values = frame[column] if column in frame.columns else pd.Series(pd.NA, index=frame.index)
        kind = CLIENT_LOG_DTYPES[column]
        if kind in ("Int64", "Float64"):
            out[column] = pd.to_numeric(values, errors="coerce").astype(kind)
        else:
            out[column] = values.astype(kind)
    # A row cut short by a live writer has no event (or no time): drop it.
    out = out[out["event"].notna() & out["t_ns"].notna()]
    return out.reset_index(drop=True)


def replies(log: pd.DataFrame) -> pd.DataFrame:
    """Only the `reply` rows, ordered by receive time."""
    return log[log["event"] == "reply"].sort_values("recv_ns", kind="stable")


def error_events(log: pd.DataFrame) -> pd.DataFrame:
    """Only the `error:<kind>` rows, with the kind in an `error` column."""
    errors = log[log["event"].str.startswith(ERROR_PREFIX).fillna(False)].copy()
    errors["error"] = errors["event"].str.slice(len(ERROR_PREFIX))
    return errors


def connection_hosts(log: pd.DataFrame) -> pd.Series:
    """The backend each connection was served by (its most frequent reply host), by conn_id."""
    rep = replies(log)
    if rep.empty:
        return pd.Series(dtype="string", name="host")
    return rep.groupby("conn_id")["host"].agg(lambda s: s.mode().iloc[0]).astype("string")
