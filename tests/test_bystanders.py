"""Extra reply time of the connections a migration does not move (analysis/bystanders.py)."""

from __future__ import annotations

from p4cf_kit.analysis import synthetic
from p4cf_kit.analysis.bystanders import bystander_delays
from p4cf_kit.analysis.downtime import downtime_for_migrations


def test_bystanders_measure_reply_time_not_send_interval() -> None:
    exp = synthetic.generate()
    phases = synthetic.phases(exp)
    log = exp.log.copy()
    delays = bystander_delays(log, phases)
    moved = downtime_for_migrations(log, phases)
    # only connections the migration did not move, and they are not charged the 20 ms interval
    for k, part in delays.groupby("migration"):
        m = moved[moved["migration"] == k]
        assert set(part["conn_id"]) == set(m.loc[~m["migrated"], "conn_id"])
    assert delays["extra_ms"].max() < 2.0
    # one bystander request in migration 1 takes 30 ms longer: that is what shows
    first = phases.iloc[0]
    conn = int(delays[delays["migration"] == 1]["conn_id"].iloc[0])
    during = log.index[(log["event"] == "reply") & (log["conn_id"] == conn)
                       & (log["recv_ns"] >= first["t_start_ns"]) & (log["send_ns"] <= first["t_end_ns"])]
    log.loc[during[0], "recv_ns"] += 30_000_000
    slow = bystander_delays(log, phases)
    row = slow[(slow["migration"] == 1) & (slow["conn_id"] == conn)].iloc[0]
    assert 29.0 < row["extra_ms"] < 32.0
