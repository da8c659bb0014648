"""The kit's controller against a real embedded switch process over gRPC P4Runtime.

The switch runs as the kit runs it (p4cf_kit.switch.embedded.process), without ports: these
tests check entries, pool changes, migration moves, read-back after reconnect and
counters, not packets (tests/test_lab.py does packets).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from p4cf_kit.control.connection import SwitchConnection
from p4cf_kit.control.counters import read_counters
from p4cf_kit.control.loadbalancer import LoadBalancer, NextHop
from p4cf_kit.errors import ConfigError, SwitchError
from p4cf_kit.switch import targets
from p4cf_kit.switch.embedded import process
from p4cf_kit.switch.state import STATE_FILE, SwitchState

VIP = "10.0.0.100"
CLIENT = NextHop("02:cf:00:00:01:01", "10.0.1.10", 1)
H2 = NextHop("02:cf:00:00:01:02", "10.0.2.10", 2)
H3 = NextHop("02:cf:00:00:01:03", "10.0.3.10", 3)
H4 = NextHop("02:cf:00:00:01:04", "10.0.4.10", 4)
PORT_MACS = {p: f"02:cf:00:00:02:{p:02x}" for p in range(1, 5)}


@pytest.fixture(scope="module")
def switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwitchState]:
    state = tmp_path_factory.mktemp("sw")
    sw = process.start_switch(state, {}, f"unix:{state / 'grpc.sock'}")
    assert sw.target == "embedded" and targets.running(state) == sw
    yield sw
    assert targets.stop_switch(state) == sw.pid
    assert not Path(f"/proc/{sw.pid}").exists() or targets.running_pid(state) is None


@pytest.fixture()
def lb(switch: SwitchState) -> Iterator[LoadBalancer]:
    conn = SwitchConnection(switch.grpc_addr).connect(push_pipeline=True)
    balancer = LoadBalancer(conn, VIP)
    balancer.install(VIP, "10.0.1.0/24", CLIENT, [H2, H3], PORT_MACS)
    yield balancer
    conn.close()


def test_install_reads_back_from_the_switch(lb: LoadBalancer) -> None:
    st = lb.state()
    assert st.vip == VIP and st.base == 1 and st.count == 2
    assert st.backends == [H2, H3]
    assert st.client == CLIENT
    assert st.return_subnets == {"10.0.1.0/24": VIP}
    assert st.port_macs == PORT_MACS


def test_install_is_idempotent(lb: LoadBalancer) -> None:
    lb.install(VIP, "10.0.1.0/24", CLIENT, [H2, H3], PORT_MACS)
    assert lb.state().backends == [H2, H3]


def test_pool_grows_and_shrinks(lb: LoadBalancer) -> None:
    assert lb.add_backend(H4).backends == [H2, H3, H4]
    st = lb.remove_backend("10.0.3.10")
    assert st.backends == [H2, H4] and st.count == 2 and not st.extra_slots  # slot 3 deleted
    assert lb.set_pool([H3]).backends == [H3]
    assert lb.set_pool([H2, H3]).backends == [H2, H3]


def test_replace_and_move_touch_one_slot(lb: LoadBalancer) -> None:
    assert lb.replace_backend("10.0.3.10", H4).backends == [H2, H4]
    index = lb.move_backend("10.0.2.10", H4.mac, "10.0.2.10", 4)  # h2 migrated onto h4's port
    assert index == 1
    st = lb.state()
    assert st.backends == [NextHop(H4.mac, "10.0.2.10", 4), H4]
    assert st.count == 2


def test_move_slot_writes_once_and_reads_nothing(lb: LoadBalancer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Migration's switch phase: the slot is found first (`slot_index`), then one MODIFY alone."""
    from p4cf_kit.control import loadbalancer

    index = lb.slot_index("10.0.2.10")
    assert index == 1
    writes: list[str] = []
    real_write = loadbalancer.write

    def no_read(*args: object, **kwargs: object) -> None:
        raise AssertionError("move_slot read the switch")

    def counted_write(te: object, op: str) -> None:
        writes.append(op)
        real_write(te, op)

    monkeypatch.setattr(loadbalancer, "read_table", no_read)
    monkeypatch.setattr(loadbalancer, "write", counted_write)
    assert lb.move_slot(index, H4.mac, "10.0.2.10", 4) == 1
    assert writes == ["modify"]
    monkeypatch.undo()
    assert lb.state().backends == [NextHop(H4.mac, "10.0.2.10", 4), H3]
    with pytest.raises(SwitchError, match="modify on MyIngress.ecmp_nhop failed"):
        lb.move_slot(7, H4.mac, H4.ip, 4)  # MODIFY never creates an entry


def test_reconnect_reads_the_switch_not_memory(switch: SwitchState, lb: LoadBalancer) -> None:
    lb.set_pool([H3, H4])
    lb.conn.close()
    conn = SwitchConnection(switch.grpc_addr).connect(push_pipeline=False)
    try:
        fresh = LoadBalancer(conn)  # knows nothing: no VIP, no pool
        st = fresh.state()
        assert st.vip == VIP and st.backends == [H3, H4] and st.client == CLIENT
        fresh.move_backend(1, H2.mac, H2.ip, H2.port)
        assert fresh.state().backends == [H3, H2]
    finally:
        conn.close()


def test_a_backup_session_is_refused_unless_asked_for(switch: SwitchState, lb: LoadBalancer) -> None:
    low = SwitchConnection(switch.grpc_addr, election_id=(0, 1))
    with pytest.raises(SwitchError, match="another controller is primary"):
        low.connect(timeout=3)
    low.connect(timeout=3, require_primary=False)  # a reader (like `p4cf status`)
    try:
        assert not low.primary
        assert LoadBalancer(low).state().backends == [H2, H3]
    finally:
        low.close()


def test_counters_dataframe(lb: LoadBalancer) -> None:
    df = read_counters(1, 2)
    assert list(df["index"]) == [0, 1, 2]
    assert list(df["role"]) == ["client", "backend", "backend"]
    assert list(df["ip"]) == [CLIENT.ip, H2.ip, H3.ip]
    assert (df["packets"] == 0).all() and (df["bytes"] == 0).all()


def test_bad_pool_changes_are_clear_errors(lb: LoadBalancer) -> None:
    with pytest.raises(ConfigError, match="not in the pool"):
        lb.remove_backend("10.9.9.9")
    with pytest.raises(ConfigError, match="slot 5 does not exist"):
        lb.move_backend(5, H2.mac, H2.ip, 2)
    with pytest.raises(ConfigError, match="at least one backend"):
        lb.set_pool([])
    with pytest.raises(ConfigError, match="already in the pool"):
        lb.add_backend(H2)


def test_connect_to_nothing_fails_in_time(tmp_path: Path) -> None:
    conn = SwitchConnection(f"unix:{tmp_path / 'nobody.sock'}")
    with pytest.raises(SwitchError, match="cannot open a P4Runtime session"):
        conn.connect(timeout=1.0)


def test_switch_start_failure_names_the_log(tmp_path: Path) -> None:
    with pytest.raises(SwitchError, match="switch log"):
        process.start_switch(tmp_path, {1: "p4cf-nosuchif"}, f"unix:{tmp_path / 'g.sock'}", timeout=10)
    assert not (tmp_path / STATE_FILE).exists()


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (like the kit)")


def test_an_open_session_never_holds_the_interpreter_at_exit(switch: SwitchState) -> None:
    """p4runtime-shell's stream thread is a daemon and ending the session is bounded: a process
    (a Jupyter kernel) with a session open exits at once, also when the switch stops answering."""
    code = textwrap.dedent(f"""
        import os, signal, threading
        from p4cf_kit.control.connection import SwitchConnection
        conn = SwitchConnection({switch.grpc_addr!r}).connect()
        assert all(t.daemon for t in threading.enumerate() if t is not threading.main_thread())
        os.kill({switch.pid}, signal.SIGSTOP)  # the switch hangs; exit closes the session
    """)
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    finally:
        os.kill(switch.pid, signal.SIGCONT)
    assert proc.returncode == 0, proc.stderr
