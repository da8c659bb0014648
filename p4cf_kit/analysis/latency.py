"""Request latency per operation: percentiles over time, and before, during and after each migration.

Why per operation: a workload's requests differ (redis SET and GET, an HTTP GET, a custom
request); the client log's `op` names each, and latency is the request's `rtt_ms` (send to
reply). A request belongs to a migration's `during` when its send-to-reply span overlaps
the migration, to `before` when its reply came earlier (within the margin), to `after` when
it was sent later (within the margin). Bins are by send time.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pandas as pd

from p4cf_kit.analysis.client_log import replies
from p4cf_kit.analysis.phases import migration_label, record_window_ns

NS = 1_000_000_000
DEFAULT_BIN_S = 0.1
DEFAULT_MARGIN_S = 2.0
PERCENTILES: tuple[int, ...] = (50, 95, 99)
WINDOWS: tuple[str, ...] = ("before", "during", "after")
BIN_COLUMNS: tuple[str, ...] = ("migration", "label", "migration_s", "op", "t_s", "n", "p50_ms", "p99_ms")
WINDOW_COLUMNS: tuple[str, ...] = ("migration", "op", "window", "n", "p50_ms", "p95_ms", "p99_ms", "max_ms")


def timed_requests(log: pd.DataFrame) -> pd.DataFrame:
    """Reply rows with op (empty op: "request"), send/recv ns and rtt_ms as floats."""
    rep = replies(log)
    op = rep["op"].fillna("").replace("", "request") if "op" in rep else pd.Series("request", index=rep.index)
    return pd.DataFrame({"op": op.astype(str), "send_ns": rep["send_ns"].astype("float64"),
                         "recv_ns": rep["recv_ns"].astype("float64"),
                         "rtt_ms": rep["rtt_ms"].astype("float64")}).dropna()


def _stats(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {**{f"p{p}_ms": float("nan") for p in PERCENTILES}, "max_ms": float("nan")}
    return {**{f"p{p}_ms": float(np.percentile(values, p)) for p in PERCENTILES}, "max_ms": float(values.max())}


def _count(record: pd.Series, column: str) -> int:
    value = record.get(column)
    return 0 if value is None or pd.isna(value) else int(value)


def checked_label(record: pd.Series) -> str:
    """`m1 h2→h4` plus the data check after it when there was one (`1,392 keys ok`,
    `2 lost, 1 wrong of 1,392 keys`, `data check failed`): a figure that shows the latency shows the data too."""
    label = migration_label(record) + _bulk_label(record)
    keys = record.get("data_keys")
    if keys is None or pd.isna(keys):
        return label
    lost, wrong = _count(record, "data_missing"), _count(record, "data_wrong")
    if lost or wrong:
        return f"{label}, {lost} lost, {wrong} wrong of {int(keys):,} keys"
    if str(record.get("data_ok", True)).strip().lower() in ("false", "0"):
        return f"{label}, data check failed ({int(keys):,} keys)"
    return f"{label}, {int(keys):,} keys ok"


def _bulk_label(record: pd.Series) -> str:
    """`, bulk 8,192 ok` (or what was lost of it) when the backend's bulk data was checked."""
    keys = record.get("bulk_keys")
    if keys is None or pd.isna(keys):
        return ", bulk data NOT checked" if str(record.get("bulk_ok")).strip().lower() in ("false", "0") else ""
    lost, wrong = _count(record, "bulk_missing"), _count(record, "bulk_wrong")
    if lost or wrong or str(record.get("bulk_ok")).strip().lower() in ("false", "0"):
        return f", bulk {lost} lost, {wrong} wrong of {int(keys):,}"
    return f", bulk {int(keys):,} ok"


def latency_bins_around(log: pd.DataFrame, phases: pd.DataFrame, bin_s: float = DEFAULT_BIN_S,
                        before_s: float = 1.0, after_s: float = 2.0) -> pd.DataFrame:
    """p50/p99 per `bin_s` per op, on a time axis relative to each migration's start (t_s), with
    each migration's label and length (migration_s) so the figure redraws from this table alone.
    Columns: BIN_COLUMNS."""
    req = timed_requests(log)
    rows: list[dict[str, Any]] = []
    for _, record in phases.iterrows():
        start, end = record_window_ns(record)
        about = {"migration": int(record["migration"]), "label": checked_label(record),
                 "migration_s": (end - start) / NS}
        rel = (req["send_ns"] - start) / NS
        near = req[(rel >= -before_s) & (rel < after_s)].assign(t_s=rel)
        near = near.assign(bin=np.floor(near["t_s"] / bin_s).astype(int))
        for (op, b), group in near.groupby(["op", "bin"]):
            values = group["rtt_ms"].to_numpy()
            rows.append({**about, "op": op, "t_s": round(cast(int, b) * bin_s, 6),
                         "n": int(values.size), "p50_ms": float(np.percentile(values, 50)),
                         "p99_ms": float(np.percentile(values, 99))})
    return pd.DataFrame(rows, columns=list(BIN_COLUMNS))


def latency_windows(log: pd.DataFrame, phases: pd.DataFrame, margin_s: float = DEFAULT_MARGIN_S) -> pd.DataFrame:
    """Latency percentiles per migration, op and window (before, during, after). Columns: WINDOW_COLUMNS."""
    req = timed_requests(log)
    margin = margin_s * NS
    rows: list[dict[str, Any]] = []
    for _, record in phases.iterrows():
        start, end = record_window_ns(record)
        windows = {"before": (req["recv_ns"] < start) & (req["recv_ns"] >= start - margin),
                   "during": (req["send_ns"] <= end) & (req["recv_ns"] >= start),
                   "after": (req["send_ns"] > end) & (req["send_ns"] <= end + margin)}
        for op in sorted(req["op"].unique()):
            of_op = req["op"] == op
            for window in WINDOWS:
                values = req.loc[of_op & windows[window], "rtt_ms"].to_numpy()
                rows.append({"migration": int(record["migration"]), "op": op, "window": window,
                             "n": int(values.size), **_stats(values)})
    return pd.DataFrame(rows, columns=list(WINDOW_COLUMNS))


def latency_summary(log: pd.DataFrame, phases: pd.DataFrame, margin_s: float = DEFAULT_MARGIN_S) -> dict[str, Any]:
    """{op: {window: {p50_ms, p99_ms, n}}} over all migrations (empty without requests)."""
    req = timed_requests(log)
    if req.empty or phases.empty:
        return {}
    margin = margin_s * NS
    masks = {w: pd.Series(False, index=req.index) for w in WINDOWS}
    for _, record in phases.iterrows():
        start, end = record_window_ns(record)
        masks["before"] |= (req["recv_ns"] < start) & (req["recv_ns"] >= start - margin)
        masks["during"] |= (req["send_ns"] <= end) & (req["recv_ns"] >= start)
        masks["after"] |= (req["send_ns"] > end) & (req["send_ns"] <= end + margin)
    out: dict[str, Any] = {}
    for op in sorted(req["op"].unique()):
        of_op = req["op"] == op
        out[op] = {}
        for window in WINDOWS:
            values = req.loc[of_op & masks[window], "rtt_ms"].to_numpy()
            stats = _stats(values)
            out[op][window] = {"n": int(values.size), "p50_ms": stats["p50_ms"], "p99_ms": stats["p99_ms"]}
    return out
