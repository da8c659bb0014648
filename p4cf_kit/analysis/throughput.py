"""Replies per second per backend over time, from the client log."""

from __future__ import annotations

import numpy as np
import pandas as pd

from p4cf_kit.analysis.client_log import replies

NS = 1_000_000_000


def experiment_start_ns(log: pd.DataFrame) -> int:
    """t0 of an experiment's time axis: the first row of the client log."""
    return int(log["t_ns"].min())


def throughput_per_backend(log: pd.DataFrame, bin_s: float = 1.0, t0_ns: int | None = None) -> pd.DataFrame:
    """Replies per second per host in bins of `bin_s` seconds.

    Returns long form with columns t_s (bin start, seconds since t0), host,
    messages_per_s; every host has a row in every bin (0 when silent) so lines
    drop to zero during a migration instead of jumping over it. The last bin,
    cut short by the end of the run, is left out when there are three or more.
    """
    rep = replies(log)
    t0 = experiment_start_ns(log) if t0_ns is None else t0_ns
    if rep.empty:
        return pd.DataFrame({"t_s": pd.Series(dtype=float), "host": pd.Series(dtype="string"),
                             "messages_per_s": pd.Series(dtype=float)})
    t_s = (rep["recv_ns"].astype("int64") - t0) / NS
    bins = np.floor(t_s / bin_s).astype("int64")
    counts = pd.crosstab(bins.to_numpy(), rep["host"].to_numpy())
    first, last = int(bins.min()), int(bins.max())
    if last - first >= 2:
        last -= 1  # the last bin is cut short by the end of the run: it would look like a drop
    counts = counts.reindex(range(first, last + 1), fill_value=0)
    counts.index.name, counts.columns.name = "bin", "host"
    long = counts.stack().rename("count").reset_index()
    long["t_s"] = long["bin"] * bin_s
    long["messages_per_s"] = long["count"] / bin_s
    long["host"] = long["host"].astype("string")
    return long[["t_s", "host", "messages_per_s"]].sort_values(["host", "t_s"]).reset_index(drop=True)
