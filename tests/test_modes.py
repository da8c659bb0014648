"""Migration modes and backend memory on the real stack (Podman + runc + CRIU + userfaultfd).

One lab (`mm`, subnets 10.158.N.0/24) whose backends each hold a small ballast (32 MiB: its pages
take a few hundred ms to follow a lazy restore, time to kill their source; big sizes belong to
benchmarks/migration_scaling.py). Each test moves h2's backend between h2 and h4 under traffic.
The ballast is checked by the server itself (SIGUSR1: every page holds what it last wrote,
workload/ballast.py), so a page lost on the way is seen, not assumed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from migration_labs import home, migration_lab
from p4cf_kit.analysis import downtime_for_record, load_client_log
from p4cf_kit.analysis.client_log import error_events
from p4cf_kit.config import parse_config
from p4cf_kit.doctor.checks.criu import check_migration_modes
from p4cf_kit.errors import ConfigError, MigrationError
from p4cf_kit.lab import Lab
from p4cf_kit.migration import migrate, modes, precopy
from p4cf_kit.migration.lazy import LazyTransfer
from p4cf_kit.migration.modes import DIRTY_FEATURE
from p4cf_kit.migration.netns_lock import lock_present
from p4cf_kit.migration.plan import MigrationPlan, container_state
from p4cf_kit.migration.record import MigrationRecord
from p4cf_kit.podman.images import WORKLOAD_IMAGES, build_workload
from p4cf_kit.podman.restore_gate import GATES_DIR
from p4cf_kit.podman.runner import podman
from p4cf_kit.topology.memory import check_ballast_held, check_memory_fits
from p4cf_kit.topology.pods import pod_net
from p4cf_kit.workload.ballast import PAGE, Ballast

LAB = "mm"
OCTET = 171
BALLAST_MIB = 32
CONNECTIONS = 8


# ---- no lab needed -------------------------------------------------------------------------

def test_ballast_check_finds_a_lost_page() -> None:
    ballast = Ballast(4)
    for step in range(20):
        ballast.touch(now=step * 1.0)
    assert ballast.check() == 0
    ballast.memory[3 * PAGE:4 * PAGE] = bytes(PAGE)     # a page a lazy restore never received
    assert ballast.check() == 1


def test_ballast_the_machine_cannot_hold_is_refused_with_the_numbers() -> None:
    with pytest.raises(ConfigError, match=r"need 4608 MiB \(1024 x 4 \+ 512 MiB headroom\).*has 2000 MiB"
                                          r".*at most 372"):
        check_memory_fits(1024, 3, available=2000)
    check_memory_fits(256, 3, available=2000)


def test_a_server_without_the_ballast_is_refused() -> None:
    held = "2026-12-07T12:00:00.000Z listening host=h2 addr=0.0.0.0:8000 pid=1 ballast_mib=64"
    check_ballast_held(held, 64, "p4cf-x-h2-srv")
    with pytest.raises(ConfigError, match=r"p4cf-x-h2-srv does not hold the 64 MiB.*p4cf images build"):
        check_ballast_held("2026-12-07T12:00:00.000Z listening host=h2 addr=0.0.0.0:8000 pid=1", 64, "p4cf-x-h2-srv")


def test_mode_and_memory_in_the_config() -> None:
    cfg = parse_config({"backend": {"memory_mib": 64}, "migration": {"mode": "lazy"}})
    assert cfg.backend.memory_mib == 64 and cfg.migration.mode == "lazy"
    old = parse_config({"backend": {"ballast_mib": 64}})     # the older name still reads
    assert old.backend.memory_mib == old.backend.ballast_mib == 64
    assert parse_config({"backend": {"memory_mib": 16}, "workload": {"kind": "redis"}}).backend.memory_mib == 16
    with pytest.raises(ConfigError, match="migration.mode = 'fast'.*stop-and-copy, lazy, pre-copy"):
        parse_config({"migration": {"mode": "fast"}})
    with pytest.raises(ConfigError, match="ballast_mib"):
        parse_config({"backend": {"ballast_mib": -1}})
    with pytest.raises(ConfigError, match="memory_mib = 32 and backend.ballast_mib = 16 disagree.*keep memory_mib"):
        parse_config({"backend": {"memory_mib": 32, "ballast_mib": 16}})
    with pytest.raises(ConfigError, match="applies to the echo workload .* and to redis .* only; workload.kind is "
                                          "'http': set backend.memory_mib = 0"):
        parse_config({"backend": {"memory_mib": 16}, "workload": {"kind": "http"}})


PRE_COPY = modes.support("pre-copy")
no_dirty_tracking = pytest.mark.skipif(PRE_COPY.available, reason="this kernel tracks dirty pages: pre-copy runs")


@no_dirty_tracking
def test_pre_copy_is_refused_with_the_kernels_reason() -> None:
    assert not PRE_COPY.available and "dirty pages" in PRE_COPY.reason and DIRTY_FEATURE in PRE_COPY.reason
    with pytest.raises(ConfigError, match=r"pre-copy.*refused: .*does not track dirty pages.*Use --mode stop-and-copy"):
        modes.require("pre-copy")


@no_dirty_tracking
def test_pre_copy_is_refused_by_the_api_before_the_lab_is_touched() -> None:
    lab = Lab(parse_config({"lab": {"name": "pcref"}}))     # never brought up
    with pytest.raises(ConfigError, match="pre-copy.*refused: .*dirty pages"):
        lab.migrate("h2", "h4", mode="pre-copy")
    state = lab.names.state              # (the property makes the folder: it must stay empty)
    assert not list(state.iterdir()), "a refused migration touched the lab's state"
    state.rmdir()


@no_dirty_tracking
def test_pre_copy_is_refused_by_the_cli_with_the_reason() -> None:
    proc = subprocess.run([sys.executable, "-m", "p4cf_kit", "migrate", "h2", "h4", "--mode", "pre-copy",
                           "--lab", "pcref"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "migration mode 'pre-copy' is refused" in proc.stderr and "dirty pages" in proc.stderr, proc.stderr
    assert "Use --mode stop-and-copy" in proc.stderr


def test_pre_copy_round_options() -> None:
    assert precopy.parent_args(0) == ""                             # round 1: every page
    assert precopy.parent_args(2) == "--parent-path ../pre-copy-2"   # later rounds and the final dump
    assert precopy.round_dir(1) == "pre-copy-1"
    with pytest.raises(ValueError, match="count from 1"):
        precopy.round_dir(0)


def test_pre_copy_rounds_stop_when_they_no_longer_help() -> None:
    mib = 1 << 20
    assert precopy.another_round([])                                   # always one round
    assert precopy.another_round([64 * mib, 8 * mib])                  # shrinking: go on
    assert not precopy.another_round([64 * mib, 8 * mib, 2 * mib])     # MAX_ROUNDS reached
    assert precopy.another_round([64 * mib, 8 * mib, 2 * mib], max_rounds=5)
    assert not precopy.another_round([64 * mib, 512 * 1024])           # converged: the last round was small
    assert not precopy.another_round([64 * mib, 70 * mib])             # dirtied as fast as copied
    assert precopy.round_bytes_text([3, 2, 1]) == "3;2;1"


def test_pre_copy_images_reach_every_round_from_the_landing(tmp_path: Path) -> None:
    """The final images' `parent` link (made in the landing folder, absolute) and the rounds'
    relative links resolve to the source's rounds, as CRIU opens them."""
    userdata, landing = tmp_path / "src" / "userdata", tmp_path / "dst" / "userdata" / "checkpoint"
    for n in (1, 2):
        (userdata / precopy.round_dir(n)).mkdir(parents=True)
        (userdata / precopy.round_dir(n) / "pages-1.img").write_bytes(bytes(4096 * n))
    (userdata / precopy.round_dir(2) / precopy.PARENT_LINK).symlink_to(precopy.parent_args(1).split()[1])
    landing.mkdir(parents=True)
    (landing / precopy.PARENT_LINK).symlink_to(userdata / precopy.round_dir(2))
    oldest = landing / precopy.PARENT_LINK / precopy.PARENT_LINK
    assert oldest.resolve() == (userdata / precopy.round_dir(1)).resolve()
    assert precopy.folder_bytes(oldest) == 4096
    assert precopy.folder_bytes(landing / precopy.PARENT_LINK) == 8192     # links are not counted


def test_a_round_failing_for_a_missing_criu_feature_says_which() -> None:
    seen = ('`/usr/bin/podman container checkpoint --pre-checkpoint p4cf-mm-h2-srv` failed (exit 125): '
            'time="2026-12-07T18:57:15Z" level=error msg="CRIU is missing features"\nError: `/var/lib/p4cf/'
            'runtime/p4cf-runc checkpoint --image-path /x/userdata/pre-checkpoint --work-path /x/userdata '
            '--pre-dump bc27` failed: exit status 1')     # Podman 4.3.1 + runc 1.1.5 on this kernel
    assert "does not track dirty pages" in precopy.explain_round_failure(seen)
    assert precopy.explain_round_failure("Error: no space left on device") == ""


def test_pre_copy_record_columns() -> None:
    rec = MigrationRecord(src="h2", dst="h4", backend="h2", mode="pre-copy", precopy_rounds=2,
                          precopy_round_bytes="1000;10", checkpoint_bytes=5)
    row = rec.as_row()
    assert row["precopy_rounds"] == 2 and row["precopy_round_bytes"] == "1000;10" and row["checkpoint_bytes"] == 5


def test_doctor_says_which_modes_this_kernel_allows() -> None:
    result = check_migration_modes()
    assert result.name == "migration-modes" and not result.required
    assert "usable: stop-and-copy" in result.detail
    if not modes.support("pre-copy").available:
        assert "pre-copy refused" in result.detail and "dirty pages" in result.detail


# ---- on a lab --------------------------------------------------------------------------------

def _ready() -> bool:
    return os.geteuid() == 0 and podman("image", "exists", WORKLOAD_IMAGES[1].ref, check=False).returncode == 0


lab_only = [pytest.mark.podman, pytest.mark.criu, pytest.mark.netns, pytest.mark.slow,
            pytest.mark.skipif(not _ready(), reason="needs root and the kit images (`p4cf images build`)"),
            pytest.mark.skipif(not modes.support("lazy").available, reason=modes.support("lazy").reason)]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    build_workload(WORKLOAD_IMAGES[0])     # the server of this checkout (ballast, SIGUSR1 check)
    with migration_lab(LAB, OCTET, backend={"memory_mib": BALLAST_MIB}) as made:
        yield made


def _ballast_lines(container: str) -> list[str]:
    return [ln for ln in podman("logs", container).stdout.splitlines() if ln.split()[1:2] == ["ballast"]]


def _ballast_report(lab: Lab, host: str) -> dict[str, str]:
    """Ask the backend at `host` to check its ballast (SIGUSR1) and return its log line's fields."""
    name = lab.names.server(host)
    before = len(_ballast_lines(name))
    podman("kill", "--signal", "USR1", name)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = _ballast_lines(name)
        if len(lines) > before:
            return dict(re.findall(r"(\w+)=(\S+)", lines[-1]))
        time.sleep(0.1)
    raise AssertionError(f"{name} did not report its ballast check")


def _clean(lab: Lab, host: str, away: str) -> None:
    assert host in lab.pool() and away not in lab.pool()
    assert container_state(lab.names.server(host)) == "running"
    assert container_state(lab.names.server(away)) is None
    for h in (host, away):
        assert not lock_present(pod_net(lab.names, lab.config.host(h)).netns_path), f"CRIU lock left in {h}"
    assert not list(GATES_DIR.glob("*-args")), "runc options of a lazy migration left behind"


def _migrate_under_traffic(lab: Lab, src: str, dst: str, mode: str,
                           tmp_path: Path) -> tuple[MigrationRecord, pd.DataFrame]:
    """One `mode` migration src -> dst under the client's traffic; its record and the client log."""
    run = lab.traffic(connections=CONNECTIONS, rate=50, log_dir=tmp_path)
    run.wait_rows(5 * CONNECTIONS)
    time.sleep(0.5)
    rec = migrate(lab, src, dst, mode=mode)
    time.sleep(1.0)
    run.stop()
    return rec, load_client_log(run.csv_path)


def _every_connection_survived(log: pd.DataFrame, rec: MigrationRecord) -> None:
    errors = error_events(log)
    assert errors.empty, errors.to_dict("records")
    moved = downtime_for_record(log, rec.as_row())
    moved = moved[moved["migrated"]]
    assert len(moved) == rec.sockets_rewritten >= 1 and moved["survived"].all()


class TestOnALab:
    pytestmark = lab_only

    def test_lazy_migration_keeps_connections_and_every_page(self, lab: Lab, tmp_path: Path) -> None:
        src, dst = home(lab)
        assert _ballast_report(lab, src)["ok"] == "True"
        rec, log = _migrate_under_traffic(lab, src, dst, "lazy", tmp_path)
        assert rec.ok and rec.mode == "lazy" and rec.pages_done_s is not None
        assert rec.checkpoint_bytes < BALLAST_MIB * 2**20, "the memory went through the images, not lazily"
        report = _ballast_report(lab, dst)
        assert report["ok"] == "True" and report["bad_pages"] == "0", report
        assert int(report["pages"]) == BALLAST_MIB * 2**20 // PAGE
        _every_connection_survived(log, rec)
        _clean(lab, dst, src)

    @pytest.mark.skipif(not PRE_COPY.available, reason=PRE_COPY.reason)
    def test_pre_copy_migration_keeps_connections_and_every_page(self, lab: Lab, tmp_path: Path) -> None:
        src, dst = home(lab)
        rec, log = _migrate_under_traffic(lab, src, dst, "pre-copy", tmp_path)
        assert rec.ok and rec.mode == "pre-copy" and rec.precopy_rounds is not None and rec.precopy_rounds >= 1
        rounds = [int(n) for n in rec.precopy_round_bytes.split(";")]
        assert len(rounds) == rec.precopy_rounds and rounds[0] > BALLAST_MIB * 2**20, "round 1 copies every page"
        assert rec.checkpoint_bytes < rounds[0], "the final dump wrote every page again"
        report = _ballast_report(lab, dst)
        assert report["ok"] == "True" and report["bad_pages"] == "0", report
        _every_connection_survived(log, rec)
        _clean(lab, dst, src)
        userdata = Path(podman("inspect", "--format", "{{.StaticDir}}", lab.names.server(dst)).stdout.strip())
        assert not list(userdata.glob("pre-c*")), "pre-dump rounds left behind"

    @pytest.mark.skipif(not PRE_COPY.available, reason=PRE_COPY.reason)
    def test_pre_copy_failure_after_the_final_dump_rolls_back_with_state(self, lab: Lab) -> None:
        src, dst = home(lab)
        with pytest.raises(MigrationError, match="rolled back: the backend runs at"):
            migrate(lab, src, dst, mode="pre-copy", fail_at="rewrite")
        _clean(lab, src, dst)
        assert _ballast_report(lab, src)["bad_pages"] == "0"

    @no_dirty_tracking
    def test_a_pre_dump_round_that_fails_leaves_the_backend_at_the_source_and_nothing_behind(
            self, lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """This kernel cannot pre-dump, so round 1 fails for real (Podman, runc and CRIU say why):
        past the refusal (the kit's own check, skipped here on purpose), the migration must roll
        back with the backend serving at the source, its connections kept, and no round left."""
        src, dst = home(lab)
        monkeypatch.setattr(modes, "require", lambda mode: None)
        monkeypatch.setattr(modes, "transfer_for", lambda mode, plan: precopy.PreCopyTransfer(plan))
        userdata = Path(podman("inspect", "--format", "{{.StaticDir}}", lab.names.server(src)).stdout.strip())
        run = lab.traffic(connections=CONNECTIONS, rate=50, log_dir=tmp_path)
        run.wait_rows(5 * CONNECTIONS)
        with pytest.raises(MigrationError, match=r"(?s)pre-copy round 1 of .* failed.*CRIU is missing features.*"
                                                 r"does not track dirty pages.*rolled back") as err:
            migrate(lab, src, dst, mode="pre-copy")
        time.sleep(0.5)
        run.stop()
        print(f"\nreal error: {err.value}")
        rec = err.value.record
        assert rec is not None and rec.failed_phase == "prepare" and rec.rolled_back and rec.precopy_rounds is None
        _clean(lab, src, dst)
        assert not list(userdata.glob("pre-c*")), "a failed round left images behind"
        errors = error_events(load_client_log(run.csv_path))
        assert errors.empty, errors.to_dict("records")
        assert _ballast_report(lab, src)["bad_pages"] == "0"

    def test_stop_and_copy_with_a_ballast_keeps_every_page(self, lab: Lab, tmp_path: Path) -> None:
        src, dst = home(lab)
        rec = migrate(lab, src, dst, mode="stop-and-copy")
        assert rec.ok and rec.mode == "stop-and-copy" and rec.checkpoint_bytes > BALLAST_MIB * 2**20
        assert _ballast_report(lab, dst)["bad_pages"] == "0"
        _clean(lab, dst, src)

    def test_lazy_page_source_killed_mid_way_fails_loudly_and_restarts_at_the_source(
            self, lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        src, dst = home(lab)
        backend = "h2"
        killed: list[int] = []
        transfers: list[modes.MemoryTransfer] = []
        original = modes.transfer_for

        def remember(mode: str, plan: MigrationPlan) -> modes.MemoryTransfer:
            transfers.append(original(mode, plan))
            return transfers[-1]

        def kill_page_source(phase: str) -> None:
            if phase == "switch":     # the backend has just resumed at dst; its pages are on the way
                transfer = transfers[0]
                assert isinstance(transfer, LazyTransfer)
                killed.extend(transfer.page_server_pids())
                for pid in killed:
                    os.kill(pid, signal.SIGKILL)

        monkeypatch.setattr(modes, "transfer_for", remember)
        run = lab.traffic(connections=CONNECTIONS, rate=50, log_dir=tmp_path)
        run.wait_rows(5 * CONNECTIONS)
        with pytest.raises(MigrationError, match=r"(?s)page transfer from .* failed.*FRESH server runs at") as err:
            migrate(lab, src, dst, mode="lazy", on_phase=kill_page_source)
        run.stop()
        assert killed, "no page server was found to kill"
        rec = err.value.record
        assert rec is not None
        assert not rec.ok and rec.failed_phase == "cleanup" and rec.rolled_back
        _clean(lab, src, dst)
        report = _ballast_report(lab, src)        # a fresh, whole backend serves at the source
        assert report["ok"] == "True" and report["host"] == backend
        log = load_client_log(run.csv_path)
        assert not error_events(log).empty, "connections to a lost backend cannot survive: they must be reported"
        after = lab.traffic(connections=2, rate=20, log_dir=tmp_path / "after")
        after.wait_rows(10)
        after.stop()
        assert error_events(load_client_log(after.csv_path)).empty

    def test_lazy_failure_before_the_restore_restarts_at_the_source(self, lab: Lab) -> None:
        src, dst = home(lab)
        with pytest.raises(MigrationError, match="FRESH server runs at"):
            migrate(lab, src, dst, mode="lazy", fail_at="rewrite")
        _clean(lab, src, dst)

    def test_lazy_failure_after_the_restore_rolls_back_with_state(self, lab: Lab) -> None:
        src, dst = home(lab)
        with pytest.raises(MigrationError, match="rolled back: the backend runs at"):
            migrate(lab, src, dst, mode="lazy", fail_at="switch")
        _clean(lab, src, dst)
        assert _ballast_report(lab, src)["bad_pages"] == "0"
