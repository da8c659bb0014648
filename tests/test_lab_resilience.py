"""A lab that survives its switch, its own concurrency, and says when replies stop (issue 15).

One lab ("trs", 10.231.n.0/24: h1 client, h2 and h3 backends, h4 idle) on the real stack:
  * `p4cf traffic` fails (exit 1, with the reason) when replies stop on live connections;
  * the switch killed with SIGKILL under traffic comes back with `p4cf up` (switch only, from
    the lab's record), then again with `p4cf switch restart`: same placements (a migrated
    backend stays where it went), counters start anew, not one connection broken, every
    connection answered again;
  * a session whose switch restarted by other means (empty) reinstalls the entries by itself;
  * two `p4cf migrate` at once take turns: the second waits, naming the first, then fails
    with a clear reason instead of a Podman error.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from p4cf_kit.lab import Lab
from p4cf_kit.podman.runner import podman
from p4cf_kit.switch import targets as switch_targets
from p4cf_kit.topology import cleanup

REPO = Path(__file__).resolve().parents[1]
SERVER_IMAGE = "localhost/p4cf-tcp-server:latest"
CLIENT_IMAGE = "localhost/p4cf-tcp-client:latest"
CONFIG = """\
[lab]
name = "trs"
hosts = 4
vip = "10.231.0.100"
subnet_pattern = "10.231.{n}.0/24"
backends = ["h2", "h3"]
"""


def _images_present() -> bool:
    return os.geteuid() == 0 and all(
        podman("image", "exists", i, check=False).returncode == 0 for i in (SERVER_IMAGE, CLIENT_IMAGE))


pytestmark = [
    pytest.mark.podman, pytest.mark.netns, pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (Podman, netns, nftables)"),
    pytest.mark.skipif(not _images_present(), reason="kit images missing: run `p4cf images build`"),
]


def p4cf(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "p4cf_kit", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("trs") / "lab.toml"
    path.write_text(CONFIG)
    cleanup.down("trs")
    up = p4cf("up", "--config", str(path), "--json")
    assert up.returncode == 0, up.stderr
    try:
        yield path
    finally:
        p4cf("down", "--lab", "trs")
        cleanup.remove_state("trs")


def pool(lab: Lab) -> list[str]:
    return lab.status()["pool"] and [b["host"] for b in lab.status()["pool"]["backends"]]


def test_traffic_fails_when_replies_stop(config_path: Path) -> None:
    lab = Lab.attach("trs")
    servers = [lab.names.server(h) for h in ("h2", "h3")]
    proc = subprocess.Popen([sys.executable, "-m", "p4cf_kit", "traffic", "--lab", "trs", "-n", "8",
                             "--duration", "4", "--rate", "20", "--max-silence", "1", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    time.sleep(1.5)
    podman("pause", *servers)
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        podman("unpause", *servers, check=False)
    assert proc.returncode == 1, err
    data = json.loads(out)
    assert data["failed"] and data["totals"]["broken"] == 0
    assert data["unanswered"] > 0 and len(data["replies_stopped"]) == 8
    assert all(s["silent_s"] > 1 for s in data["replies_stopped"])
    text = p4cf("traffic", "--lab", "trs", "-n", "2", "--duration", "1", "--rate", "10")
    assert text.returncode == 0 and "every request answered" in text.stdout, text.stdout + text.stderr


def test_switch_killed_under_traffic_comes_back_with_the_lab(config_path: Path) -> None:
    lab = Lab.attach("trs")
    rec = lab.migrate("h2", "h4")  # a placement a rebuild would lose
    assert rec.ok
    lab.close()
    placed = pool(lab)
    assert placed == ["h4", "h3"]
    run = lab.traffic(connections=8, rate=20, duration=16)
    try:
        run.wait_rows(8 * 10)
        time.sleep(1.0)
        before = int(lab.counters()["packets"].sum())
        lab.close()
        pid = switch_targets.running_pid(lab.names.state)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        killed_ns = time.time_ns()
        up = p4cf("up", "--config", str(config_path), "--json")
        assert up.returncode == 0, up.stderr
        restarted = json.loads(up.stdout)["switch_restarted"]
        assert restarted["pool"] == ["h4", "h3"] and restarted["pid"] != pid
        after = int(lab.counters()["packets"].sum())
        assert after < before, "the new switch's counters start from zero"
        assert pool(lab) == placed
        lab.close()
        time.sleep(3.0)
        again = p4cf("switch", "restart", "--lab", "trs", "--json")  # a live switch, restarted
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["pool"] == ["h4", "h3"]
        assert run.wait(timeout=60) == 0
    finally:
        run.stop()
        lab.close()
    summary = run.summary()
    assert summary["totals"]["broken"] == 0
    assert summary["totals"]["replies_stopped"] == 0, summary["connections"]
    replies = run.replies()
    resumed = replies[replies["recv_ns"] > killed_ns].groupby("conn_id").size()
    assert len(resumed) == 8, "every connection is answered again after the restart"
    assert pool(lab) == placed
    assert {c["Names"][0] for c in json.loads(podman("ps", "--filter", f"label={lab.names.lab_label}",
                                                     "--format", "json").stdout)} >= {
        lab.names.server("h4"), lab.names.server("h3")}


def test_a_session_reinstalls_a_switch_that_restarted_under_it(config_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from p4cf_kit.recovery import start_switch_process
    lab = Lab.attach("trs")
    placed = lab.pool()  # opens this process's session
    pid = switch_targets.running_pid(lab.names.state)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while lab.conn is not None and lab.conn.alive() and time.monotonic() < deadline:
        time.sleep(0.1)  # the session's stream breaks
    assert start_switch_process(lab) != pid  # a bare switch: pipeline preloaded, no entries
    try:
        assert lab.pool() == placed  # reconnected, found the switch empty, reinstalled
        assert "the switch restarted and was empty; reinstalled" in capsys.readouterr().err
    finally:
        lab.close()


def test_two_migrations_at_once_take_turns(config_path: Path) -> None:
    results: dict[int, subprocess.CompletedProcess[str]] = {}

    def migrate(i: int) -> None:
        results[i] = p4cf("migrate", "--lab", "trs", "h4", "h2")

    threads = [threading.Thread(target=migrate, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
        time.sleep(0.3)
    for t in threads:
        t.join(timeout=240)
    codes = sorted(r.returncode for r in results.values())
    assert codes == [0, 1], {i: r.stderr for i, r in results.items()}
    loser = next(r for r in results.values() if r.returncode == 1)
    assert "lab 'trs' is busy" in loser.stderr and "migrating h4's backend to h2" in loser.stderr
    assert "h4 does not run a backend" in loser.stderr
    assert "already in use" not in loser.stderr and "no such container" not in loser.stderr
    lab = Lab.attach("trs")
    assert pool(lab) == ["h2", "h3"]
