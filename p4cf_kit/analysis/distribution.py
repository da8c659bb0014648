"""How traffic spread over the backends, seen by the client and by the switch.

The client log counts replies per backend (`host` in each reply). The switch
counts packets per LB group member. Both are turned into fractions per host so
they can be compared: they agree when the load balancer does what the client saw.

Switch counter schema (one row per counter read, cumulative since the lab came up):

    t_ns     int   CLOCK_REALTIME ns when the counter was read
    select   int   member index in the LB group (the hash bucket's backend slot)
    host     str   id of the backend behind that member: the id its server reports
                   (P4CF_HOST_ID, e.g. h2), kept when the backend migrates to another
                   host network, so both sides name backends the same way
    packets  int   packets counted so far
    bytes    int   bytes counted so far
    location str   (optional) host network the backend is on at read time (h2, h4...)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from p4cf_kit.analysis.client_log import replies

SWITCH_COUNTER_COLUMNS: tuple[str, ...] = ("t_ns", "select", "host", "packets", "bytes")
DEFAULT_TOLERANCE = 0.05  # absolute difference of fractions counted as agreement


def client_distribution(log: pd.DataFrame) -> pd.DataFrame:
    """Messages and connections per backend from the client log.

    Columns: host, messages, connections, fraction (of messages), connection_fraction.
    """
    rep = replies(log)
    grouped = rep.groupby("host").agg(messages=("seq", "size"), connections=("conn_id", "nunique"))
    out = grouped.reset_index()
    out["host"] = out["host"].astype("string")
    out["fraction"] = out["messages"] / max(int(out["messages"].sum()), 1)
    out["connection_fraction"] = out["connections"] / max(int(out["connections"].sum()), 1)
    return out.sort_values("host").reset_index(drop=True)


def switch_distribution(counters: pd.DataFrame, t_from_ns: int | None = None,
                        t_to_ns: int | None = None) -> pd.DataFrame:
    """Packets and bytes per backend from switch counter reads.

    With a window, the count is the increase between the first and last read in it
    (per member); without one, the last read (counters start at zero). Each member's
    count goes to the host named by its latest read.
    Columns: host, packets, bytes, fraction (of packets).
    """
    missing = [c for c in SWITCH_COUNTER_COLUMNS if c not in counters.columns]
    if missing:
        raise ValueError(f"switch counters lack columns {missing}; expected {SWITCH_COUNTER_COLUMNS}")
    frame = counters.sort_values("t_ns", kind="stable")
    if t_from_ns is not None:
        frame = frame[frame["t_ns"] >= t_from_ns]
    if t_to_ns is not None:
        frame = frame[frame["t_ns"] <= t_to_ns]
    windowed = t_from_ns is not None or t_to_ns is not None
    # A member's counter is cumulative whatever host it names, so counts are taken
    # per member and credited to the host of its latest read.
    per_member = frame.groupby("select")
    counts = per_member[["packets", "bytes"]].last()
    if windowed:
        counts = counts - per_member[["packets", "bytes"]].first()
    counts["host"] = per_member["host"].last()
    out = counts.groupby("host")[["packets", "bytes"]].sum().reset_index()
    out["host"] = out["host"].astype("string")
    out["fraction"] = out["packets"] / max(int(out["packets"].sum()), 1)
    return out.sort_values("host").reset_index(drop=True)


def switch_counters_from_reads(reads: Iterable[tuple[int, pd.DataFrame]]) -> pd.DataFrame:
    """Counter reads as taken by `Lab.counters()` (index, host, role, ..., packets, bytes), each
    with the CLOCK_REALTIME ns of the read, turned into the schema above.

    Only backend slots are kept (the client's next hop counts the return direction).
    The read's `host` (where the next hop's address is) becomes `location` and, unless
    the frame already has a `backend` column, `host` too.
    """
    parts = []
    for t_ns, read in reads:
        frame = read[read["role"] == "backend"] if "role" in read.columns else read
        parts.append(pd.DataFrame({
            "t_ns": int(t_ns), "select": frame["index"] if "index" in frame.columns else frame["select"],
            "host": frame["backend"] if "backend" in frame.columns else frame["host"],
            "packets": frame["packets"], "bytes": frame["bytes"], "location": frame["host"]}))
    if not parts:
        return pd.DataFrame(columns=[*SWITCH_COUNTER_COLUMNS, "location"])
    return pd.concat(parts, ignore_index=True)


def compare_distributions(client: pd.DataFrame, switch: pd.DataFrame, tolerance: float = DEFAULT_TOLERANCE,
                          host_aliases: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Fractions per host side by side, and whether each pair agrees within `tolerance`.

    Columns: host, client_fraction, switch_fraction, difference, within_tolerance.
    A host seen by only one side gets fraction 0 on the other. `host_aliases` renames
    switch-side hosts first, e.g. {"h4": "h2"} when the switch names the backend
    that moved from h2 by its new location.
    """
    switch = switch.assign(host=switch["host"].astype(str).replace(dict(host_aliases or {})))
    switch = switch.groupby("host", as_index=False)["fraction"].sum()
    merged = pd.merge(client[["host", "fraction"]].rename(columns={"fraction": "client_fraction"}),
                      switch[["host", "fraction"]].rename(columns={"fraction": "switch_fraction"}),
                      on="host", how="outer").fillna({"client_fraction": 0.0, "switch_fraction": 0.0})
    merged["difference"] = merged["client_fraction"] - merged["switch_fraction"]
    merged["within_tolerance"] = merged["difference"].abs() <= tolerance
    return merged.sort_values("host").reset_index(drop=True)


def distributions_agree(client: pd.DataFrame, switch: pd.DataFrame, tolerance: float = DEFAULT_TOLERANCE,
                        host_aliases: Mapping[str, str] | None = None) -> bool:
    """True when every backend's fractions agree within `tolerance`."""
    return bool(compare_distributions(client, switch, tolerance, host_aliases)["within_tolerance"].all())


def distribution_figure_data(client: pd.DataFrame, switch: pd.DataFrame | None,
                             host_aliases: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Long form for the distribution figure: source (client|switch), host, count, unit, fraction.

    `host_aliases` renames switch-side hosts as in compare_distributions.
    """
    parts = [pd.DataFrame({"source": "client", "host": client["host"], "count": client["messages"],
                           "unit": "messages", "fraction": client["fraction"]})]
    if switch is not None and not switch.empty:
        switch = switch.assign(host=switch["host"].astype(str).replace(dict(host_aliases or {})))
        switch = switch.groupby("host", as_index=False)[["packets", "fraction"]].sum()
        parts.append(pd.DataFrame({"source": "switch", "host": switch["host"], "count": switch["packets"],
                                   "unit": "packets", "fraction": switch["fraction"]}))
    out = pd.concat(parts, ignore_index=True)
    out["host"] = out["host"].astype("string")
    return out
