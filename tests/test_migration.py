"""Live migration on the real stack: Podman + runc + CRIU, the embedded P4Runtime switch, real
TCP from the client container through the switch to the backend that moves.

One lab (`mt`, subnets 10.157.N.0/24) serves every test here; the backend on h2 moves to
the idle h4 and back. Failure injection: `migrate(..., fail_at=PHASE)` lets that phase do
its real work and then fail, so rollback starts from the real state after each phase.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from migration_labs import home, migration_lab
from p4cf_kit.analysis import downtime_for_record, load_client_log
from p4cf_kit.analysis.client_log import error_events, replies
from p4cf_kit.errors import ConfigError, MigrationError
from p4cf_kit.lab import Lab
from p4cf_kit.migration import PHASES, MigrationRecord, cpu_split, migrate
from p4cf_kit.migration.netns_lock import lock_present
from p4cf_kit.migration.plan import container_state
from p4cf_kit.netns import call_in_netns_path
from p4cf_kit.podman.restore_gate import GATES_DIR
from p4cf_kit.podman.runner import podman
from p4cf_kit.topology.pods import pod_net

SERVER_IMAGE = "localhost/p4cf-tcp-server:latest"
CLIENT_IMAGE = "localhost/p4cf-tcp-client:latest"
LAB = "mt"
OCTET = 157


def _ready() -> bool:
    return os.geteuid() == 0 and all(podman("image", "exists", i, check=False).returncode == 0
                                     for i in (SERVER_IMAGE, CLIENT_IMAGE))


pytestmark = [
    pytest.mark.podman, pytest.mark.criu, pytest.mark.netns, pytest.mark.slow,
    pytest.mark.skipif(not _ready(), reason="needs root and the kit images (`p4cf images build`)"),
]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with migration_lab(LAB, OCTET) as made:
        yield made


class Traffic:
    """The client in h1 for the duration of a test, its log read at the end."""

    def __init__(self, lab: Lab, tmp: Path, connections: int = 12) -> None:
        self.run = lab.traffic(connections=connections, rate=50, log_dir=tmp)
        self.run.wait_rows(5 * connections)

    def stop(self) -> pd.DataFrame:
        time.sleep(1.0)
        self.run.stop()   # the client drains its outstanding requests and writes its summary
        return load_client_log(self.run.csv_path)


def _assert_all_alive(traffic: Traffic, log: pd.DataFrame, connections: int) -> None:
    """Every connection open to the end and every request it sent answered: none lost."""
    errors = error_events(log)
    assert errors.empty, f"client errors: {errors[['conn_id', 'event', 'detail']].to_dict('records')}"
    assert replies(log)["conn_id"].nunique() == connections
    totals = traffic.run.summary()["totals"]
    assert totals["opened"] == connections and totals["broken"] == 0, totals
    assert totals["unanswered"] == 0 and totals["received"] == totals["sent"] > 0, totals


def _assert_counts_continue(log: pd.DataFrame) -> None:
    """The server's per-connection counter goes up by one per reply: no fresh server answered."""
    rep = replies(log).sort_values(["conn_id", "recv_ns"])
    steps = rep.groupby("conn_id")["server_count"].diff().dropna()
    assert (steps == 1).all(), f"server counts jumped: {steps[steps != 1].to_dict()}"


def _assert_backend_at(lab: Lab, host: str, away: str) -> None:
    assert host in lab.pool() and away not in lab.pool()
    assert container_state(lab.names.server(host)) == "running"
    assert container_state(lab.names.server(away)) is None
    for h in (host, away):    # CRIU's network lock is gone from both pods
        assert not lock_present(pod_net(lab.names, lab.config.host(h)).netns_path), f"CRIU lock left in {h}"
    running = podman("inspect", "--format", "{{.Id}}", lab.names.server(host)).stdout.strip()
    gates = [p.name for p in GATES_DIR.glob("*")]
    assert not [g for g in gates if g.split(".")[0] == running], f"restore gate left for {host}: {gates}"
    assert not any(podman("container", "exists", g.split(".")[0], check=False).returncode for g in gates), \
        f"restore gates of removed containers left: {gates}"
    _assert_every_cpu_again(lab)


def _assert_every_cpu_again(lab: Lab) -> None:
    """After a migration or its rollback no process of the lab, nor the kit, is left on part of
    the CPUs (migration/cpu_split.py splits them while the downtime lasts)."""
    every = os.sched_getaffinity(os.getppid())    # what the kit's caller may use (untouched by it)
    workloads = cpu_split.lab_workloads(lab.names.lab_label, lab.names.state, 0)
    assert len(workloads) >= 4, workloads       # the client, the servers, the switch: all found
    pinned = {}
    for pid in cpu_split.process_tree(workloads):
        try:
            cpus = os.sched_getaffinity(pid)
        except ProcessLookupError:
            continue                             # ended meanwhile
        if cpus != every:
            pinned[pid] = cpus
    assert not pinned, f"lab processes left on part of the CPUs: {pinned}"
    assert os.sched_getaffinity(0) == every


def test_migration_keeps_connections_and_server_state(lab: Lab, tmp_path: Path) -> None:
    src, dst = home(lab)
    traffic = Traffic(lab, tmp_path)
    time.sleep(0.5)
    seen: list[str] = []
    rec = migrate(lab, src, dst, on_phase=seen.append)
    time.sleep(1.0)
    log = traffic.stop()
    print(f"\nphases (s): {rec.timings.as_dict()} total {rec.total_s:.3f}")
    assert rec.ok and rec.backend == "h2" and rec.container == lab.names.server(dst)
    assert seen == [p for p in PHASES if p != "transfer"]  # within one machine: no transfer
    assert rec.nudged >= rec.sockets_rewritten and rec.criu_dump_s and rec.criu_restore_s
    assert rec.t_start_ns < rec.t_end_ns and rec.checkpoint_bytes > 1_000_000
    assert rec.sockets_rewritten >= 1
    assert all(v is not None and v >= 0 for k, v in rec.timings.as_dict().items() if k != "transfer")
    assert rec.timings.transfer is None  # within one machine
    _assert_backend_at(lab, dst, src)
    _assert_all_alive(traffic, log, 12)
    _assert_counts_continue(log)
    per_conn = downtime_for_record(log, rec.as_row())
    moved = per_conn[per_conn["migrated"]]
    assert len(moved) == rec.sockets_rewritten and moved["survived"].all()
    after = replies(log)[replies(log)["recv_ns"] > rec.t_end_ns]
    moved_after = after[after["conn_id"].isin(moved["conn_id"])]
    assert set(moved_after["server_ip"]) == {str(lab.config.host(dst).ip)}   # served from the new host
    assert set(moved_after["host"]) == {"h2"}                                # by the same backend
    print(f"client gap (ms): {moved['downtime_ms'].round(0).tolist()}")


def test_ten_migrations_back_and_forth_without_drops(lab: Lab, tmp_path: Path) -> None:
    traffic = Traffic(lab, tmp_path)
    records: list[MigrationRecord] = []
    for k in range(10):
        src, dst = home(lab)
        records.append(migrate(lab, src, dst, migration=k + 1))
        time.sleep(0.7)
    log = traffic.stop()
    assert all(r.ok for r in records)
    assert [r.src for r in records[:2]] == [records[0].src, records[0].dst]
    _assert_all_alive(traffic, log, 12)
    _assert_counts_continue(log)
    gaps = pd.concat([downtime_for_record(log, r.as_row(), margin_s=0.3) for r in records])
    moved = gaps[gaps["migrated"]]
    assert moved["survived"].all()
    print(f"\ntotal (s): {[round(r.total_s or 0, 3) for r in records]}")
    print(f"client gap (ms): median {moved['downtime_ms'].median():.0f}, max {moved['downtime_ms'].max():.0f}")


@pytest.mark.parametrize("phase", [p for p in PHASES if p != "transfer"])  # transfer: test_machines.py
def test_failure_in_each_phase_rolls_back(lab: Lab, tmp_path: Path, phase: str) -> None:
    src, dst = home(lab)
    traffic = Traffic(lab, tmp_path, connections=6)
    with pytest.raises(MigrationError) as info:
        migrate(lab, src, dst, fail_at=phase)
    log = traffic.stop()
    err = info.value
    assert err.phase == phase and f"phase '{phase}'" in str(err) and "rolled back" in str(err)
    rec = err.record
    assert rec is not None and rec.failed_phase == phase and rec.rolled_back and not rec.ok
    _assert_backend_at(lab, src, dst)
    _assert_all_alive(traffic, log, 6)
    _assert_counts_continue(log)


def _listener_in(netns_path: str, port: int) -> socket.socket:
    """A TCP listener on 0.0.0.0:`port` inside the netns."""
    def listen() -> socket.socket:
        sock = socket.socket()
        sock.bind(("0.0.0.0", port))
        sock.listen()
        return sock
    return call_in_netns_path(netns_path, listen)


def test_real_restore_failure_rolls_back(lab: Lab, tmp_path: Path) -> None:
    """Not injected: the destination's service port is taken, so CRIU cannot bind the server's
    listening socket back and the restore fails for real."""
    src, dst = home(lab)
    squatter = _listener_in(pod_net(lab.names, lab.config.host(dst)).netns_path, lab.config.port)
    traffic = Traffic(lab, tmp_path, connections=6)
    try:
        with pytest.raises(MigrationError, match="phase 'restore'") as info:
            migrate(lab, src, dst)
    finally:
        squatter.close()
    log = traffic.stop()
    assert "rolled back" in str(info.value) and "injected" not in str(info.value)
    _assert_backend_at(lab, src, dst)
    _assert_all_alive(traffic, log, 6)
    _assert_counts_continue(log)


def test_failure_injected_through_the_environment(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = home(lab)
    monkeypatch.setenv("P4CF_MIGRATION_FAIL_AT", "rewrite")
    with pytest.raises(MigrationError, match="phase 'rewrite'"):
        migrate(lab, src, dst)
    _assert_backend_at(lab, src, dst)
    monkeypatch.setenv("P4CF_MIGRATION_FAIL_AT", "nonsense")
    with pytest.raises(ConfigError, match="P4CF_MIGRATION_FAIL_AT"):
        migrate(lab, src, dst)


@pytest.mark.parametrize("src,dst,match", [
    ("h2", "h2", "to itself"),
    ("h2", "h9", "unknown host"),
    ("h2", "h3", "already runs a backend"),
    ("h1", "h4", "client host"),
    ("h2", "h1", "client host"),
])
def test_refusals(lab: Lab, src: str, dst: str, match: str) -> None:
    here, idle = home(lab)
    src, dst = (here if h == "h2" else idle if h == "h4" else h for h in (src, dst))
    before = lab.pool()
    with pytest.raises(ConfigError, match=match):
        migrate(lab, src, dst)
    assert lab.pool() == before


def test_source_without_backend_is_refused(lab: Lab) -> None:
    here, idle = home(lab)
    with pytest.raises(ConfigError, match="does not run a backend"):
        migrate(lab, idle, "h3" if idle != "h3" else here)


def test_experiment_writes_a_results_folder_that_plots(lab: Lab, tmp_path: Path) -> None:
    from p4cf_kit import results
    from p4cf_kit.cli import main
    from p4cf_kit.migration.experiment import (
        DOWNTIME_CSV,
        MIGRATION_DOWNTIME_CSV,
        PHASES_CSV,
        ExperimentOptions,
        run_experiment,
    )

    result = run_experiment(lab, ExperimentOptions(migrations=2, interval_s=2.2, connections=8, warmup_s=1.0),
                            out=tmp_path)
    folder = results.ResultsFolder.open(result.folder)
    for name in (results.CLIENT_LOG, results.CLIENT_SUMMARY, results.MIGRATIONS, results.SWITCH_COUNTERS,
                 PHASES_CSV, DOWNTIME_CSV, MIGRATION_DOWNTIME_CSV):
        assert folder.raw(name).exists(), name
    assert (folder.path / results.CONFIG_FILE).exists() and (folder.path / results.VERSIONS_FILE).exists()
    s = result.summary
    assert s["succeeded"] == 2 and s["connections_broken"] == 0 and s["client_errors"] == 0
    counters = pd.read_csv(folder.raw(results.SWITCH_COUNTERS))
    assert set(counters["host"]) == {"h2", "h3"} and {"h2", "h4"} <= set(counters["location"])
    assert main(["plot", str(folder.path)]) == 0
    assert list(folder.figures_dir.glob("timeline-m2.png"))


def test_lab_still_serves_every_backend(lab: Lab, tmp_path: Path) -> None:
    traffic = Traffic(lab, tmp_path, connections=16)
    time.sleep(1.0)
    log = traffic.stop()
    _assert_all_alive(traffic, log, 16)
    assert set(replies(log)["host"]) == {"h2", "h3"}


# --- pieces without the stack -------------------------------------------------------------------

def test_record_rows_are_what_the_analysis_reads() -> None:
    from p4cf_kit.analysis import PHASE_RECORD_FIELDS, phases_frame

    rec = MigrationRecord(src="h2", dst="h4", backend="h2", migration=3, total_s=0.5, checkpoint_bytes=10,
                          t_start_ns=1, t_end_ns=2, ok=True)
    timings = {"prepare": 0.4, "checkpoint": 0.2, "rewrite": 0.01, "restore": 0.2, "switch": 0.01, "cleanup": 0.1}
    assert set(timings) == set(PHASES) - {"transfer"}   # within one machine
    for phase, seconds in timings.items():
        rec.timings.set(phase, seconds)
    row = rec.as_row()
    assert list(row)[:len(PHASE_RECORD_FIELDS)] == list(PHASE_RECORD_FIELDS)
    frame = phases_frame([row])
    # prepare (before the freeze) and cleanup are not downtime: other = total - the four phases
    assert frame.loc[0, "backend"] == "h2" and frame.loc[0, "other_s"] == pytest.approx(0.08)
    with pytest.raises(ValueError):
        rec.timings.set("teleport", 1.0)


def test_unreachable_quotes_the_client_segment() -> None:
    import struct

    from p4cf_kit.migration.nudge import ClientSeq, _checksum, unreachable

    pkt = unreachable(ClientSeq("10.1.1.10", 40000, 8000, 123456789), "10.1.0.100")
    assert pkt[:2] == bytes([3, 1]) and _checksum(pkt) == 0            # host unreachable, valid checksum
    src, dst = pkt[8 + 12:8 + 16], pkt[8 + 16:8 + 20]
    assert (src, dst) == (bytes([10, 1, 1, 10]), bytes([10, 1, 0, 100]))
    assert struct.unpack("!HHI", pkt[28:36]) == (40000, 8000, 123456789)


def test_podman_stats_parsing() -> None:
    from p4cf_kit.migration.phases import parse_stats

    out = ('{"podman_restore_duration": 389854, "container_statistics": [{"runtime_restore_duration": 343217,'
           ' "criu_statistics": {"restore_time": 228099}}]}')
    stats = parse_stats(out, "restore")
    assert (stats.podman_s, stats.runtime_s, stats.criu_s) == pytest.approx((0.389854, 0.343217, 0.228099))
    assert parse_stats("not json", "checkpoint").criu_s is None


def test_gated_runtime_is_runc_with_a_gate() -> None:
    from p4cf_kit.podman.restore_gate import render_gated_runtime

    text = render_gated_runtime("/usr/bin/runc", Path("/run/p4cf/gates"), 120)
    assert text.startswith("#!/bin/bash") and text.rstrip().endswith('exec /usr/bin/runc "$@"')
    assert "read -r -t 120 verdict" in text and "--image-path" in text
    idle = render_gated_runtime("/usr/bin/runc", Path("/run/p4cf/gates"), 120, idle_procs=Path("/cg/cgroup.procs"))
    assert '[ -e "$gate.idle" ] && echo $$ > /cg/cgroup.procs' in idle   # conmon's runc joins the idle group


def test_down_calls_off_a_restore_waiting_at_its_gate(lab: Lab) -> None:
    """A migration killed after `prepare` leaves a restore waiting at its gate (holding its
    container's lock); `down` must call it off rather than wait for the gate's timeout.
    Last in the file: it takes the module's lab down (the fixture's own down is idempotent)."""
    from p4cf_kit.migration import phases
    from p4cf_kit.migration.plan import plan_migration
    from p4cf_kit.topology.cleanup import down

    src, dst = home(lab)
    staged = phases.prepare(lab, plan_migration(lab, src, dst))
    assert staged.process.poll() is None                      # waiting at the gate
    removed = down(LAB)
    assert staged.container_id in removed.get("gates", [])
    assert staged.process.wait(timeout=30) != 0               # called off, not restored
    assert not [p for p in GATES_DIR.glob(f"{staged.container_id}*")]
    assert container_state(lab.names.server(dst)) is None
