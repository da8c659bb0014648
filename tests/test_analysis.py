"""Analysis on small hand-made frames (exact answers) and on the synthetic experiment."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from p4cf_kit import analysis as an
from p4cf_kit.analysis import synthetic
from p4cf_kit.workload import CLIENT_LOG_COLUMNS as WORKLOAD_COLUMNS

NS = 1_000_000_000
T0 = 1_800_000_000 * NS


def make_log(conns: dict[int, tuple[str, list[float]]], events: list[tuple[int, str, float]] = (),
             ips: dict[int, list[str]] | None = None) -> pd.DataFrame:
    """A client log: per connection its host and reply times (s after T0); extra (conn, event, t_s) rows."""
    rows = []
    for conn, (host, times) in conns.items():
        rows.append({"conn_id": conn, "event": "open", "t_ns": T0 - NS})
        for i, t in enumerate(times):
            recv = T0 + int(t * NS)
            ip = (ips or {}).get(conn, [])
            rows.append({"conn_id": conn, "event": "reply", "seq": i + 1, "send_ns": recv - 500_000, "recv_ns": recv,
                         "rtt_ms": 0.5, "host": host, "server_count": i + 1, "t_ns": recv,
                         "server_ip": ip[i] if i < len(ip) else "10.0.2.2"})
    for conn, event, t in events:
        rows.append({"conn_id": conn, "event": event, "t_ns": T0 + int(t * NS)})
    return an.typed_client_log(pd.DataFrame(rows))


def ticks(start: float, stop: float, step: float = 0.1) -> list[float]:
    return [round(start + i * step, 6) for i in range(int(round((stop - start) / step)))]


def test_columns_agree_with_the_workload_client() -> None:
    assert an.CLIENT_LOG_COLUMNS == WORKLOAD_COLUMNS


def test_load_client_log_types_and_tolerates_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "client.csv"
    header = ",".join(an.CLIENT_LOG_COLUMNS)
    path.write_text(f"{header}\n"
                    "0,10.0.1.1,40000,10.0.0.100,8000,,1,2,,,,open,2,,\n"
                    "0,10.0.1.1,40000,10.0.0.100,8000,1,10,20,0.010,h2,1,reply,20,10.0.2.2,\n"
                    "0,10.0.1.1,40000,10.0.0.100,8000,2,30")  # a writer caught mid-line
    log = an.load_client_log(path)
    assert list(log["event"]) == ["open", "reply"]
    assert log["recv_ns"].dtype == "Int64" and log["rtt_ms"].dtype == "Float64"
    assert an.replies(log)["host"].tolist() == ["h2"]


def test_client_distribution_counts_messages_and_connections() -> None:
    log = make_log({0: ("h2", ticks(0, 1)), 1: ("h3", ticks(0, 2)), 2: ("h3", ticks(0, 1))})
    dist = an.client_distribution(log).set_index("host")
    assert dist.loc["h2", "messages"] == 10 and dist.loc["h3", "messages"] == 30
    assert dist.loc["h3", "connections"] == 2
    assert dist.loc["h2", "fraction"] == pytest.approx(0.25)
    assert dist.loc["h3", "connection_fraction"] == pytest.approx(2 / 3)


def test_switch_distribution_whole_run_and_window() -> None:
    counters = pd.DataFrame([
        {"t_ns": 1, "select": 0, "host": "h2", "packets": 10, "bytes": 700},
        {"t_ns": 1, "select": 1, "host": "h3", "packets": 10, "bytes": 700},
        {"t_ns": 2, "select": 0, "host": "h2", "packets": 40, "bytes": 2800},
        {"t_ns": 2, "select": 1, "host": "h3", "packets": 20, "bytes": 1400},
    ])
    whole = an.switch_distribution(counters).set_index("host")
    assert whole.loc["h2", "packets"] == 40 and whole.loc["h2", "fraction"] == pytest.approx(40 / 60)
    window = an.switch_distribution(counters, t_from_ns=1, t_to_ns=2).set_index("host")
    assert window.loc["h2", "packets"] == 30 and window.loc["h3", "packets"] == 10
    with pytest.raises(ValueError, match="packets"):
        an.switch_distribution(counters.drop(columns="packets"))


def test_compare_distributions_tolerance_and_missing_host() -> None:
    client = pd.DataFrame({"host": ["h2", "h3"], "fraction": [0.52, 0.48]})
    switch = pd.DataFrame({"host": ["h2", "h3"], "fraction": [0.50, 0.50]})
    assert an.distributions_agree(client, switch, tolerance=0.05)
    assert not an.distributions_agree(client, switch, tolerance=0.01)
    skew = pd.DataFrame({"host": ["h2", "h4"], "fraction": [0.5, 0.5]})
    cmp = an.compare_distributions(client, skew).set_index("host")
    assert cmp.loc["h4", "client_fraction"] == 0.0 and not cmp.loc["h4", "within_tolerance"]
    assert cmp.loc["h3", "switch_fraction"] == 0.0


def test_counter_reads_from_the_lab_and_host_aliases() -> None:
    def read(h2_packets: int, where: str) -> pd.DataFrame:  # the shape Lab.counters() returns
        return pd.DataFrame({"index": [0, 1, 2], "host": ["h1", where, "h3"], "role": ["client", "backend", "backend"],
                             "ip": ["", "", ""], "mac": ["", "", ""], "port": [0, 1, 2],
                             "packets": [999, h2_packets, 100], "bytes": [0, h2_packets * 70, 7000]})

    counters = an.switch_counters_from_reads([(T0, read(50, "h2")), (T0 + NS, read(100, "h4"))])
    assert set(an.SWITCH_COUNTER_COLUMNS) <= set(counters.columns)
    assert "h1" not in set(counters["host"]), "the client's next hop is not a backend"
    switch = an.switch_distribution(counters)
    assert switch.set_index("host").loc["h4", "packets"] == 100, "a cumulative counter is not summed over reads"
    client = pd.DataFrame({"host": ["h2", "h3"], "fraction": [0.5, 0.5]})
    assert not an.distributions_agree(client, switch)
    assert an.distributions_agree(client, switch, host_aliases={"h4": "h2"})


def test_throughput_bins_and_zero_filled_gap() -> None:
    times = ticks(0, 2) + ticks(3, 5)  # 10/s, silent between 2 s and 3 s
    log = make_log({0: ("h2", times), 1: ("h3", ticks(0, 5))})
    tp = an.throughput_per_backend(log, bin_s=1.0, t0_ns=T0)
    h2 = tp[tp["host"] == "h2"].set_index("t_s")["messages_per_s"]
    assert h2.loc[0.0] == pytest.approx(10) and h2.loc[2.0] == 0
    assert h2.index.max() == 3.0, "the last, partial bin is left out"
    assert set(tp["host"]) == {"h2", "h3"}


def test_reply_gaps_are_per_connection() -> None:
    log = make_log({0: ("h2", [0.0, 0.1, 0.5]), 1: ("h3", [0.0, 1.0])})
    gaps = an.reply_gaps(log)
    assert sorted(gaps["gap_ms"].round(3)) == [100.0, 400.0, 1000.0]


def test_downtime_finds_the_injected_gap_and_survival() -> None:
    # Migration from 5.0 s to 6.2 s; conn 0 (h2) silent 5.0..6.3; conn 1 (h3) unaffected;
    # conn 2 (h2) resets during it; conn 3 ended before the migration.
    moved = ticks(0, 5.1) + ticks(6.3, 9)
    log = make_log({0: ("h2", moved), 1: ("h3", ticks(0, 9)), 2: ("h2", ticks(0, 5.1)), 3: ("h3", ticks(0, 2))},
                   events=[(2, "error:reset", 5.5), (3, "close", 2.1)])
    dt = an.downtime_per_connection(log, T0 + 5 * NS, T0 + int(6.2 * NS), migrated_host="h2").set_index("conn_id")
    assert list(dt.index) == [0, 1, 2]
    assert dt.loc[0, "downtime_ms"] == pytest.approx(1300, abs=1)
    assert dt.loc[0, "gap_start_ns"] == T0 + int(5.0 * NS)
    assert dt.loc[1, "downtime_ms"] == pytest.approx(100, abs=1)
    assert dt.loc[0, "survived"] and dt.loc[1, "survived"] and not dt.loc[2, "survived"]
    assert dt.loc[2, "error"] == "reset" and math.isnan(dt.loc[2, "downtime_ms"])
    assert dt.loc[0, "migrated"] and not dt.loc[1, "migrated"]
    assert dt.loc[0, "typical_gap_ms"] == pytest.approx(100, abs=1)


def test_downtime_gap_longer_than_the_window_is_measured_whole() -> None:
    log = make_log({0: ("h2", ticks(0, 1) + ticks(20, 21))})
    dt = an.downtime_per_connection(log, T0 + 5 * NS, T0 + 6 * NS, margin_s=0.5)
    assert dt.loc[0, "downtime_ms"] == pytest.approx(19100, abs=1)


def test_connection_with_no_reply_after_the_migration_did_not_survive() -> None:
    log = make_log({0: ("h2", ticks(0, 5))})
    dt = an.downtime_per_connection(log, T0 + 5 * NS, T0 + 6 * NS)
    assert not dt.loc[0, "survived"] and dt.loc[0, "error"] == ""


def test_migrated_detected_by_address_change_when_host_id_differs() -> None:
    times = ticks(0, 1) + ticks(3, 4)
    ips = {0: ["10.0.4.4"] * 10 + ["10.0.2.2"] * 10, 1: ["10.0.3.3"] * 20}
    log = make_log({0: ("h2", times), 1: ("h3", times)}, ips=ips)
    dt = an.downtime_per_connection(log, T0 + int(1.5 * NS), T0 + int(2.5 * NS), migrated_host="h4")
    assert dt.set_index("conn_id")["migrated"].to_dict() == {0: True, 1: False}


def test_phase_breakdown_splits_the_checkpoint_at_the_freeze() -> None:
    record = {"migration": 1, "src": "h2", "dst": "h4", "checkpoint_s": 0.25, "rewrite_s": 0.01, "restore_s": 0.13,
              "switch_s": 0.005, "total_s": 0.4, "checkpoint_bytes": 1, "t_start_ns": T0, "t_end_ns": T0 + NS,
              "ok": True, "criu_dump_s": 0.09}
    split = an.phase_breakdown(an.phases_frame([record]))
    assert split.loc[0, "frozen_s"] == pytest.approx(0.09) and split.loc[0, "before_freeze_s"] == pytest.approx(0.16)
    plain = an.phase_breakdown(an.phases_frame([{k: v for k, v in record.items() if k != "criu_dump_s"}]))
    assert "frozen_s" not in plain.columns


def test_phases_frame_types_other_and_windows() -> None:
    record = {"migration": 1, "src": "h2", "dst": "h4", "checkpoint_s": 1.0, "rewrite_s": 0.1, "restore_s": 0.5,
              "switch_s": 0.05, "total_s": 2.0, "checkpoint_bytes": 1024, "t_start_ns": T0, "t_end_ns": T0 + 2 * NS,
              "ok": True}
    ph = an.phases_frame([record, {**record, "migration": 2, "ok": "false"}])
    assert ph.loc[0, "other_s"] == pytest.approx(0.35)
    assert ph["ok"].tolist() == [True, False]
    windows = an.phase_windows(ph.iloc[0])
    assert windows["phase"].tolist() == [p for p in an.PHASES if p != "transfer"]  # within one machine
    assert windows.loc[2, "start_ns"] == T0 + int(1.1 * NS) and windows.loc[3, "end_ns"] == T0 + int(1.65 * NS)
    assert len(an.phase_breakdown(ph)) == 1
    assert an.migration_markers(ph, T0 - NS)["label"].tolist() == ["m1 h2→h4", "m2 h2→h4 (failed)"]
    failed = an.phases_frame([{**record, "restore_s": None, "switch_s": None, "t_end_ns": None, "ok": False}])
    assert an.record_window_ns(failed.iloc[0]) == (T0, T0 + 2 * NS)
    assert an.phase_windows(failed.iloc[0])["phase"].tolist() == ["checkpoint", "rewrite"]
    with pytest.raises(ValueError, match="restore_s"):
        an.phases_frame([{k: v for k, v in record.items() if k != "restore_s"}])


def test_describe_median_p95_max() -> None:
    stats = an.describe(list(range(1, 101)) + [float("nan")])
    assert stats == {"n": 100, "median": 50.5, "p95": pytest.approx(95.05), "max": 100.0}
    assert an.describe([])["n"] == 0


def test_synthetic_experiment_end_to_end() -> None:
    exp = synthetic.generate(synthetic.SyntheticExperiment(duration_s=20, migration_starts_s=(6.0, 13.0),
                                                           broken={2: 1}))
    ph = synthetic.phases(exp)
    assert an.distributions_agree(an.client_distribution(exp.log), an.switch_distribution(exp.counters))
    dt = an.downtime_for_migrations(exp.log, ph)
    moved = dt[dt["migrated"] & dt["survived"]]
    assert (moved["downtime_ms"] > 500).all()
    assert (dt.loc[~dt["migrated"], "downtime_ms"] < 50).all()
    surv = an.survival_per_migration(dt).set_index("migration")
    assert surv.loc[1, "broken"] == 0 and surv.loc[2, "broken"] == 1
    assert an.migration_downtime_ms(dt[dt["migration"] == 1]) == pytest.approx(moved[moved["migration"] == 1]
                                                                               ["downtime_ms"].max())
    table = an.summary_table(dt, ph).set_index("metric")
    assert table.loc["downtime per connection, moved backend", "n"] == len(moved)
    assert table.loc["connections broken per migration", "max"] == 1
    points = an.timeline_points(exp.log, ph.iloc[0])
    assert points["t_s"].between(-2.0, ph.loc[0, "total_s"] + 2.0).all()
    assert an.timeline_phases(ph.iloc[0])["label"].iloc[0] == "m1 h2→h4"
