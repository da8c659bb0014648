"""A made-up but realistic experiment: client log, switch counters, migration records.

For tests, figure previews and notebooks without a lab. Backend `h2` lives on
host h2 and migrates h2→h4, h4→h2, ... while `h3` stays; the server's host id
moves with it while its address changes (as in the real lab). Requests go out
every 1/rate s per connection; during a migration the moving backend is frozen,
so its replies arrive late, all at once after restore and the switch update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from p4cf_kit.analysis.client_log import CLIENT_LOG_COLUMNS, typed_client_log
from p4cf_kit.analysis.phases import phases_frame

NS = 1_000_000_000
T0_NS = 1_790_000_000_000_000_000  # an arbitrary CLOCK_REALTIME instant
HOST_IPS = {"h2": "10.0.2.2", "h3": "10.0.3.3", "h4": "10.0.4.4"}
VIP, PORT = "10.0.0.100", 8000


@dataclass
class SyntheticExperiment:
    """Settings of the made-up run, and the frames it produced (after `generate`)."""

    connections: int = 8
    rate: float = 50.0
    duration_s: float = 60.0
    migration_starts_s: tuple[float, ...] = (10.0, 20.0, 30.0, 40.0, 50.0)
    broken: dict[int, int] = field(default_factory=lambda: {3: 1})  # migration -> connections that break
    seed: int = 7
    log: pd.DataFrame = field(init=False, repr=False)
    counters: pd.DataFrame = field(init=False, repr=False)
    migrations: list[dict[str, Any]] = field(init=False, repr=False)


def generate(exp: SyntheticExperiment | None = None) -> SyntheticExperiment:
    """Fill `exp.log`, `exp.counters` and `exp.migrations` from its settings (deterministic per seed)."""
    exp = exp or SyntheticExperiment()
    rng = np.random.default_rng(exp.seed)
    exp.migrations = _migrations(exp, rng)
    backends = np.array(["h2", "h3"])[rng.permutation(exp.connections) % 2]
    rows: list[pd.DataFrame] = []
    broken_left = dict(exp.broken)
    for conn_id, backend in enumerate(backends):
        break_at = None
        if backend == "h2":
            for m in exp.migrations:
                if broken_left.get(int(m["migration"]), 0) > 0:
                    broken_left[int(m["migration"])] -= 1
                    break_at = int(m["t_start_ns"]) + int(0.3 * NS)
                    break
        rows.append(_connection_rows(exp, rng, conn_id, str(backend), break_at))
    exp.log = typed_client_log(pd.concat(rows, ignore_index=True).sort_values("t_ns", kind="stable"))
    exp.counters = _counters(exp)
    return exp


def _migrations(exp: SyntheticExperiment, rng: np.random.Generator) -> list[dict[str, Any]]:
    records = []
    where = "h2"
    for i, start_s in enumerate(exp.migration_starts_s, start=1):
        dst = "h4" if where == "h2" else "h2"
        cp, rw = rng.gamma(9.0, 0.1), rng.normal(0.06, 0.01)
        rs, sw = rng.gamma(12.0, 0.06), rng.normal(0.025, 0.005)
        total = cp + rw + rs + sw + rng.uniform(0.05, 0.15)
        t_start = T0_NS + int(start_s * NS)
        records.append({"migration": i, "src": where, "dst": dst, "checkpoint_s": cp, "rewrite_s": rw,
                        "restore_s": rs, "switch_s": sw, "total_s": total,
                        "checkpoint_bytes": int(rng.normal(5.2, 0.3) * 2**20), "t_start_ns": t_start,
                        "t_end_ns": t_start + int(total * NS), "ok": True, "backend": "h2"})
        where = dst
    return records


def _connection_rows(exp: SyntheticExperiment, rng: np.random.Generator, conn_id: int, backend: str,
                     break_at: int | None) -> pd.DataFrame:
    interval = NS / exp.rate
    open_ns = T0_NS + int(conn_id * 1_000_000)
    end_ns = T0_NS + int(exp.duration_s * NS)
    send = open_ns + 1_000_000 + (np.arange(int((end_ns - open_ns) / interval)) * interval).astype(np.int64)
    send += rng.integers(0, 300_000, size=send.size)
    recv = send + (rng.lognormal(np.log(0.4), 0.25, size=send.size) * 1e6).astype(np.int64)
    ip = np.full(send.size, HOST_IPS["h3"] if backend == "h3" else HOST_IPS["h2"], dtype=object)
    if backend == "h2":
        for m in exp.migrations:
            freeze = int(m["t_start_ns"]) + int(0.05 * NS)
            thaw = int(m["t_start_ns"]) + int((float(m["checkpoint_s"]) + float(m["rewrite_s"])
                                               + float(m["restore_s"]) + float(m["switch_s"])) * NS)
            late = (recv >= freeze) & (send < thaw)
            recv[late] = thaw + np.arange(late.sum()) * 60_000 + 300_000
            ip[recv > thaw] = HOST_IPS[str(m["dst"])]
    src_port = 40000 + conn_id * 7
    base = {"conn_id": conn_id, "src_ip": "10.0.1.1", "src_port": src_port, "dst_ip": VIP, "dst_port": PORT}
    keep = np.ones(send.size, dtype=bool) if break_at is None else recv < break_at
    reply = pd.DataFrame({**base, "seq": np.arange(1, send.size + 1), "send_ns": send, "recv_ns": recv,
                          "rtt_ms": (recv - send) / 1e6, "host": backend, "server_count": np.arange(1, send.size + 1),
                          "event": "reply", "t_ns": recv, "server_ip": ip, "detail": ""})[keep]
    events = [{**base, "event": "open", "send_ns": open_ns - 400_000, "recv_ns": open_ns, "t_ns": open_ns}]
    if break_at is not None:
        events.append({**base, "event": "error:reset", "t_ns": break_at,
                       "detail": "[Errno 104] Connection reset by peer"})
    else:
        events.append({**base, "event": "close", "t_ns": end_ns + 5_000_000, "detail": "unanswered=0"})
    frame = pd.concat([reply, pd.DataFrame(events)], ignore_index=True)
    return frame.reindex(columns=list(CLIENT_LOG_COLUMNS))


def _counters(exp: SyntheticExperiment) -> pd.DataFrame:
    """Counter reads once a second: ~2 packets per reply (request and reply) plus some ACKs."""
    rep = exp.log[exp.log["event"] == "reply"]
    rows = []
    for t in range(1, int(exp.duration_s) + 1):
        t_ns = T0_NS + t * NS
        seen = rep[rep["recv_ns"] <= t_ns]
        location = "h2"
        for m in exp.migrations:
            if int(m["t_end_ns"]) <= t_ns:
                location = str(m["dst"])
        for select, backend in enumerate(("h2", "h3")):
            n = int((seen["host"] == backend).sum())
            packets = 2 * n + n // 10
            rows.append({"t_ns": t_ns, "select": select, "host": backend, "packets": packets,
                         "bytes": packets * 74, "location": location if backend == "h2" else "h3"})
    return pd.DataFrame(rows)


def phases(exp: SyntheticExperiment) -> pd.DataFrame:
    """The migration records of `exp` as a phase table."""
    return phases_frame(exp.migrations)
