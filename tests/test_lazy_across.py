"""Lazy migration across machines, on an emulated second machine reached only over SSH.

One two-machine lab (h1 client and h2 here, h3 and h4 on the emulated machine `tz`, its link
shaped to 1 Gbit/s so a 32 MiB ballast takes a few hundred ms to follow the restore: time to
kill its source). The backends hold that ballast and check it themselves (SIGUSR1,
workload/ballast.py), so a page lost on the way is seen, not assumed. The tests move h2's
backend between h2 (this machine) and h4 (the other one) in both directions under traffic,
kill the page source midway on either machine, and inject failures before and after the
restore; after each, nothing of the migration is left on either machine.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from p4cf_kit.analysis import downtime_for_record, load_client_log
from p4cf_kit.analysis.client_log import error_events
from p4cf_kit.config import MachineConfig, parse_config
from p4cf_kit.errors import MigrationError
from p4cf_kit.lab import Lab
from p4cf_kit.machines import emulated
from p4cf_kit.machines.machine import LOCAL, Machine
from p4cf_kit.machines.registry import open_machine
from p4cf_kit.machines.remote import RemoteMachine
from p4cf_kit.migration import lazy_across, modes
from p4cf_kit.migration.experiment import tune_routes
from p4cf_kit.migration.lazy_pages_remote import PageSource
from p4cf_kit.migration.netns_lock import lock_present
from p4cf_kit.migration.plan import container_state
from p4cf_kit.podman.images import WORKLOAD_IMAGES, build_workload
from p4cf_kit.podman.restore_gate import GATES_DIR
from p4cf_kit.podman.runner import podman
from p4cf_kit.topology import cleanup
from p4cf_kit.topology.pods import pod_net
from p4cf_kit.workload.ballast import PAGE

MACHINE = "tz"
LAB = "lz"
OCTET = 214
BALLAST_MIB = 32
CONNECTIONS = 8
P4CF = [sys.executable, "-m", "p4cf_kit"]
SERVER_IMAGE = "localhost/p4cf-tcp-server:latest"
LINK_GBIT = 1.0
SLOW_GBIT = 0.05     # 32 MiB of pages: about 5 s


def _ready() -> bool:
    return LOCAL.run(["id", "-u"]).stdout.strip() == "0" and Path("/usr/sbin/sshd").exists() and \
        podman("image", "exists", SERVER_IMAGE, check=False).returncode == 0


pytestmark = [pytest.mark.podman, pytest.mark.criu, pytest.mark.netns, pytest.mark.slow,
              pytest.mark.skipif(not _ready(), reason="needs root, openssh-server (make test-system) "
                                                      "and the kit images (p4cf images build)"),
              pytest.mark.skipif(not modes.support("lazy").available, reason=modes.support("lazy").reason)]


def p4cf(*args: str) -> str:
    proc = subprocess.run([*P4CF, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"p4cf {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def machine() -> Iterator[RemoteMachine]:
    """The emulated machine on a 1 Gbit/s link, with this checkout's server image pushed."""
    build_workload(WORKLOAD_IMAGES[0])     # the server of this checkout (ballast, SIGUSR1 check)
    emulated.remove(MACHINE)
    out = p4cf("machine", "emulate", MACHINE, "--link-gbit", str(LINK_GBIT), "--json")
    assert json.loads(out)["uplinks"]
    p4cf("images", "push", MACHINE)
    m = open_machine(MachineConfig(MACHINE, emulated=True))
    yield m
    m.close()
    emulated.remove(MACHINE)


@pytest.fixture(scope="module")
def lab(machine: RemoteMachine) -> Iterator[Lab]:
    cfg = parse_config({"lab": {"name": LAB, "hosts": 4, "vip": f"10.{OCTET}.0.100",
                                "subnet_pattern": f"10.{OCTET}.{{n}}.0/24"},
                        "machines": {MACHINE: {"emulated": True}},
                        "hosts": {"h3": {"machine": MACHINE}, "h4": {"machine": MACHINE}},
                        "backend": {"memory_mib": BALLAST_MIB}})
    made = Lab(cfg)
    cleanup.down(LAB)
    made.up()
    try:
        tune_routes(made, 5)
        yield made
    finally:
        made.down()


def _shape(rec: emulated.EmulatedMachine, gbit: float) -> None:
    """The link between the machines, both ends."""
    emulated.shape(emulated.mgmt_iface(MACHINE), gbit)
    emulated.shape(emulated.INSIDE_MGMT, gbit, netns=rec.netns)


def _home(lab: Lab) -> tuple[str, str]:
    return ("h2", "h4") if "h2" in lab.pool() else ("h4", "h2")


def _machine(lab: Lab, host: str) -> Machine:
    return lab.machine_of(host)


def _ballast_report(lab: Lab, host: str) -> dict[str, str]:
    """Ask the backend at `host` (on its machine) to check its ballast and return its log line's fields."""
    m, name = _machine(lab, host), lab.names.server(host)

    def lines() -> list[str]:
        return [ln for ln in m.podman("logs", name).stdout.splitlines() if ln.split()[1:2] == ["ballast"]]

    before = len(lines())
    m.podman("kill", "--signal", "USR1", name)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = lines()
        if len(found) > before:
            return dict(re.findall(r"(\w+)=(\S+)", found[-1]))
        time.sleep(0.1)
    raise AssertionError(f"{name} did not report its ballast check")


def _nothing_left(lab: Lab, host: str, away: str) -> None:
    """The backend runs at `host` only; no landing, lock, runc option or CRIU helper is left."""
    assert host in lab.pool() and away not in lab.pool()
    assert container_state(lab.names.server(host), _machine(lab, host)) == "running"
    assert container_state(lab.names.server(away), _machine(lab, away)) is None
    for h in (host, away):
        m = _machine(lab, h)
        assert not lock_present(pod_net(lab.names, lab.config.host(h), m).netns_path, m), f"CRIU lock left in {h}"
    for m in (LOCAL, _machine(lab, "h4")):
        left = m.run(["sh", "-c", f"ls {GATES_DIR} 2>/dev/null | grep -e '-args$' -e '^[0-9a-f]*$' || true"]
                     ).stdout.split()
        assert not left, f"runc options or gates left on machine {m.name}: {left}"
        daemons = m.run(["sh", "-c", "ps -eo args | grep '^[^ ]*criu lazy-pages' || true"]).stdout.strip()
        assert not daemons, f"a lazy-pages daemon left on machine {m.name}: {daemons}"


def test_lazy_migrations_across_machines_both_ways_under_traffic(lab: Lab, tmp_path: Path) -> None:
    src, dst = _home(lab)
    assert _ballast_report(lab, src)["ok"] == "True"
    run = lab.traffic(connections=CONNECTIONS, rate=50, log_dir=tmp_path)
    run.wait_rows(5 * CONNECTIONS)
    time.sleep(0.5)
    records = []
    for _ in range(2):                               # there and back
        src, dst = _home(lab)
        rec = lab.migrate(src, dst, mode="lazy")
        records.append(rec)
        assert rec.ok and rec.mode == "lazy" and rec.pages_done_s is not None, rec
        want = f"local->{MACHINE}" if src == "h2" else f"{MACHINE}->local"
        assert rec.machines == want and rec.timings.transfer is not None
        assert rec.transfer_bytes < BALLAST_MIB * 2**20, "the memory went through the images, not lazily"
        report = _ballast_report(lab, dst)
        assert report["ok"] == "True" and report["bad_pages"] == "0", report
        assert int(report["pages"]) == BALLAST_MIB * 2**20 // PAGE
        _nothing_left(lab, dst, src)
        print(f"\nlazy {rec.machines}: gap phases {rec.total_s:.3f} s, images {rec.transfer_bytes / 1e6:.2f} MB, "
              f"pages done {rec.pages_done_s:.3f} s after the switch")
        time.sleep(1.0)
    run.stop()
    log = load_client_log(run.csv_path)
    errors = error_events(log)
    assert errors.empty, errors.to_dict("records")
    for rec in records:
        moved = downtime_for_record(log, rec.as_row())
        moved = moved[moved["migrated"]]
        assert len(moved) == rec.sockets_rewritten >= 1 and moved["survived"].all()


@pytest.mark.parametrize("source", ["local", MACHINE])
def test_page_source_killed_mid_way_fails_loudly_on_both_machines(
        lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    """The source's page server dies after the backend resumed at the destination: the migration
    fails naming the page transfer, the restored backend (with holes) is gone, a fresh whole one
    serves at the source, and nothing half-made is left on either machine."""
    src, dst = _home(lab)
    if (src == "h2") != (source == "local"):          # start from the machine under test
        lab.migrate(src, dst, mode="stop-and-copy")
        src, dst = dst, src
    sources: list[PageSource] = []
    killed: list[int] = []

    class Remembered(PageSource):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            sources.append(self)

    def kill_page_source(phase: str) -> None:
        if phase == "switch":        # the backend has just resumed at dst; its pages are on the way
            killed.extend(sources[0].stop())

    monkeypatch.setattr(lazy_across, "PageSource", Remembered)
    run = lab.traffic(connections=CONNECTIONS, rate=50, log_dir=tmp_path)
    run.wait_rows(5 * CONNECTIONS)
    rec_m = emulated.load(MACHINE)
    assert rec_m is not None
    _shape(rec_m, SLOW_GBIT)       # the pages take seconds: the kill lands while they flow
    try:
        with pytest.raises(MigrationError, match=r"(?s)page transfer from .* failed.*FRESH server runs at") as err:
            lab.migrate(src, dst, mode="lazy", on_phase=kill_page_source)
    finally:
        _shape(rec_m, LINK_GBIT)
    run.stop()
    assert killed, "no page server was found to kill"
    rec = err.value.record
    assert rec is not None and not rec.ok and rec.failed_phase == "cleanup" and rec.rolled_back
    _nothing_left(lab, src, dst)
    report = _ballast_report(lab, src)                # a fresh, whole backend serves at the source
    assert report["ok"] == "True" and report["bad_pages"] == "0"
    after = lab.traffic(connections=2, rate=20, log_dir=tmp_path / "after")
    after.wait_rows(10)
    after.stop()
    assert error_events(load_client_log(after.csv_path)).empty


@pytest.mark.parametrize(("phase", "says", "ends_at"), [
    ("transfer", "FRESH server runs at", "source"),     # before the restore: restarted at the source
    ("switch", "completed there", "destination"),       # after it: completed at the destination
])
def test_an_injected_failure_ends_on_the_side_that_keeps_the_backend(lab: Lab, phase: str, says: str,
                                                                     ends_at: str) -> None:
    src, dst = _home(lab)
    with pytest.raises(MigrationError, match=says) as err:
        lab.migrate(src, dst, mode="lazy", fail_at=phase)
    assert err.value.record is not None and err.value.record.failed_phase == phase
    if ends_at == "source":
        _nothing_left(lab, src, dst)
    else:
        _nothing_left(lab, dst, src)
        assert _ballast_report(lab, dst)["bad_pages"] == "0"
