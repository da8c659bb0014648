"""The workload programs, run for real as scripts over 127.0.0.1 (no mocks)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from p4cf_kit.workload import CLIENT_LOG_COLUMNS, CLIENT_SCRIPT, SERVER_SCRIPT

LOOPBACK = "127.0.0.1"


class ServerProcess:
    """A tcp_server.py child listening on a free loopback port.

    Its own session, stdin from /dev/null and output to a file: what CRIU needs to
    dump it without `--shell-job` and restore it without inheriting descriptors.
    """

    def __init__(self, host_id: str, tmp: Path) -> None:
        self.log_path = tmp / f"server-{host_id}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, str(SERVER_SCRIPT), "--bind", LOOPBACK, "--port", "0",
                                      "--host-id", host_id], stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.port = self._wait_port()

    def _wait_port(self) -> int:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            found = re.search(r"listening .*addr=127\.0\.0\.1:(\d+)", self.log_path.read_text())
            if found:
                return int(found.group(1))
            time.sleep(0.02)
        raise AssertionError(f"server did not start: {self.log_path.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=5)
        self.log.close()
        return rc


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess("h2", tmp_path)
    yield srv
    if srv.proc.poll() is None:
        srv.proc.kill()
        srv.proc.wait(timeout=5)
    srv.log.close()


def start_client(port: int, csv_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(CLIENT_SCRIPT), "--vip", LOOPBACK, "--port", str(port),
                             "--csv", str(csv_path), "--flush-interval", "0.1", *extra])


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def wait_for_replies(path: Path, count: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and sum(r["event"] == "reply" for r in read_rows(path)) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} replies in {path}")


def test_client_logs_replies_with_host_and_counts(server: ServerProcess, tmp_path: Path) -> None:
    log = tmp_path / "client.csv"
    client = start_client(server.port, log, "--connections", "3", "--rate", "50", "--duration", "1")
    assert client.wait(timeout=10) == 0
    rows = read_rows(log)
    assert list(rows[0].keys()) == list(CLIENT_LOG_COLUMNS)
    replies = [r for r in rows if r["event"] == "reply"]
    assert len(replies) > 100
    assert {r["host"] for r in replies} == {"h2"}
    assert sum(r["event"] == "open" for r in rows) == 3
    assert sum(r["event"] == "close" for r in rows) == 3
    assert not [r for r in rows if r["event"].startswith("error:")]
    for conn in ("0", "1", "2"):
        counts = [int(r["server_count"]) for r in replies if r["conn_id"] == conn]
        assert counts == list(range(1, len(counts) + 1)), "server count must rise by one per message"
        assert all(int(r["src_port"]) > 0 and r["dst_ip"] == LOOPBACK for r in replies if r["conn_id"] == conn)
    assert all(float(r["rtt_ms"]) >= 0 and int(r["recv_ns"]) >= int(r["send_ns"]) for r in replies)
    summary = json.loads((tmp_path / "client.summary.json").read_text())
    assert summary["totals"]["opened"] == 3 and summary["totals"]["broken"] == 0
    assert summary["totals"]["sent"] == summary["totals"]["received"] == len(replies)
    assert server.stop() == 0
    server_log = server.log_path.read_text()
    assert server_log.count(" open ") == 3 and server_log.count(" close ") == 3 and "stopped" in server_log


def test_sigterm_stops_client_and_server_cleanly(server: ServerProcess, tmp_path: Path) -> None:
    log = tmp_path / "client.csv"
    client = start_client(server.port, log, "--connections", "2", "--drain", "0.2")
    wait_for_replies(log, 10)
    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=5) == 0
    rows = read_rows(log)
    assert sum(r["event"] == "close" for r in rows) == 2
    assert (tmp_path / "client.summary.json").exists()
    assert server.stop() == 0


def test_killed_server_is_logged_as_errors_and_never_reopened(server: ServerProcess, tmp_path: Path) -> None:
    log = tmp_path / "client.csv"
    client = start_client(server.port, log, "--connections", "3", "--duration", "10")
    wait_for_replies(log, 15)
    server.proc.kill()
    server.proc.wait(timeout=5)
    # With every connection broken the client has nothing left to do and exits by itself.
    assert client.wait(timeout=5) == 0
    rows = read_rows(log)
    errors = [r for r in rows if r["event"].startswith("error:")]
    assert sorted(r["conn_id"] for r in errors) == ["0", "1", "2"]
    assert {r["event"] for r in errors} <= {"error:eof", "error:reset"}
    assert sum(r["event"] == "open" for r in rows) == 3, "a broken connection must not be reopened"
    last_error_at = max(rows.index(r) for r in errors)
    assert not [r for r in rows[last_error_at + 1:] if r["event"] in ("open", "reply")]
    summary = json.loads((tmp_path / "client.summary.json").read_text())
    assert summary["totals"]["broken"] == 3


def test_frozen_server_gives_late_replies_not_errors(server: ServerProcess, tmp_path: Path) -> None:
    """A paused backend (what a checkpoint looks like from outside) must not break connections."""
    log = tmp_path / "client.csv"
    client = start_client(server.port, log, "--connections", "2", "--rate", "50", "--stall-after", "0.3")
    wait_for_replies(log, 10)
    os.kill(server.proc.pid, signal.SIGSTOP)
    time.sleep(0.6)
    os.kill(server.proc.pid, signal.SIGCONT)
    replies_before = sum(r["event"] == "reply" for r in read_rows(log))
    wait_for_replies(log, replies_before + 20)
    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=5) == 0
    rows = read_rows(log)
    assert not [r for r in rows if r["event"].startswith("error:")]
    assert sum(r["event"] == "stall" for r in rows) >= 2
    for conn in ("0", "1"):
        replies = [r for r in rows if r["conn_id"] == conn and r["event"] == "reply"]
        counts = [int(r["server_count"]) for r in replies]
        assert counts == list(range(1, len(counts) + 1))
        assert max(float(r["rtt_ms"]) for r in replies) > 400, "the freeze shows as late replies"
    assert server.stop() == 0


def test_client_exits_1_when_nothing_listens(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind((LOOPBACK, 0))
        port = probe.getsockname()[1]
    log = tmp_path / "client.csv"
    client = start_client(port, log, "--connections", "2", "--duration", "1")
    assert client.wait(timeout=10) == 1
    assert [r["event"] for r in read_rows(log)] == ["error:refused", "error:refused"]


def test_client_columns_match_package_constant() -> None:
    text = CLIENT_SCRIPT.read_text()
    assert all(f'"{c}"' in text for c in CLIENT_LOG_COLUMNS)
    header = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(CLIENT_SCRIPT.parent)!r});"
                             "import tcp_client; print(','.join(tcp_client.COLUMNS))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert header == ",".join(CLIENT_LOG_COLUMNS)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.criu
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("criu") is None, reason="needs root and CRIU")
def test_server_state_survives_criu_checkpoint_and_restore(server: ServerProcess, tmp_path: Path) -> None:
    """Dump the live server with its established connections, restore it: counts go on, nothing breaks."""
    images = tmp_path / "criu"
    images.mkdir()
    log = tmp_path / "client.csv"
    client = start_client(server.port, log, "--connections", "2", "--rate", "50", "--stall-after", "0.3")
    pid = server.proc.pid
    try:
        wait_for_replies(log, 20)
        dump = subprocess.run(["criu", "dump", "-t", str(pid), "-D", str(images), "--tcp-established",
                               "-o", "dump.log"], capture_output=True, text=True, timeout=30)
        assert dump.returncode == 0, (images / "dump.log").read_text()[-3000:]
        server.proc.wait(timeout=5)  # dump ends the original process; reap it so its pid is free
        time.sleep(0.5)
        restore = subprocess.run(["criu", "restore", "-D", str(images), "--tcp-established", "-d",
                                  "-o", "restore.log"], capture_output=True, text=True, timeout=30)
        assert restore.returncode == 0, (images / "restore.log").read_text()[-3000:]
        assert pid_alive(pid), "CRIU restores the server under its old pid"
        replies_before = sum(r["event"] == "reply" for r in read_rows(log))
        wait_for_replies(log, replies_before + 20)
        client.send_signal(signal.SIGTERM)
        assert client.wait(timeout=5) == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(timeout=5)
        if pid_alive(pid):  # the restored server is not our child: stop it by pid, then wait for it to go
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
    rows = read_rows(log)
    assert not [r for r in rows if r["event"].startswith("error:")]
    assert sum(r["event"] == "open" for r in rows) == 2
    assert sum(r["event"] == "stall" for r in rows) >= 2
    for conn in ("0", "1"):
        replies = [r for r in rows if r["conn_id"] == conn and r["event"] == "reply"]
        assert [int(r["server_count"]) for r in replies] == list(range(1, len(replies) + 1)), \
            "the per-connection count lives in the server's memory and must survive the restore"
        assert max(float(r["rtt_ms"]) for r in replies) > 400
    assert "stopped host=h2" in server.log_path.read_text(), "the restored server exits cleanly on SIGTERM"


def test_replies_that_stop_are_reported_not_hidden(server: ServerProcess, tmp_path: Path) -> None:
    """A backend that freezes for good: no error, no reset, but the summary says what was lost."""
    from p4cf_kit.analysis.silence import describe_silence, silences, too_silent, unanswered

    log = tmp_path / "client.csv"
    client = start_client(server.port, log, "--connections", "2", "--rate", "50", "--duration", "2",
                          "--drain", "0.2")
    wait_for_replies(log, 10)
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        assert client.wait(timeout=10) == 0
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    summary = json.loads((tmp_path / "client.summary.json").read_text())
    totals = summary["totals"]
    assert totals["broken"] == 0
    assert totals["unanswered"] == totals["sent"] - totals["received"] > 0
    assert totals["replies_stopped"] == 2
    rows = read_rows(log)
    for conn in summary["connections"]:
        last = max(int(r["recv_ns"]) for r in rows if r["conn_id"] == str(conn["conn_id"]) and r["event"] == "reply")
        assert conn["replies_stopped_ns"] == last  # the last reply is when they stopped
        assert conn["silent_s"] > 0.5
    assert unanswered(summary) == totals["unanswered"]
    assert [s.conn_id for s in silences(summary)] != []
    assert len(too_silent(summary, 0.5)) == 2 and too_silent(summary, 60) == []
    text = describe_silence(summary, 0.5)
    assert f"{totals['unanswered']} of {totals['sent']} requests unanswered" in text
    assert "replies stopped on 2 connection(s)" in text and "over the 0.5 s allowed" in text
    assert server.stop() == 0
