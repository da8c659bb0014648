"""The wait for a lazy migration's last page counts only while no page moves.

Real sockets on the loopback and real processes stand in for nothing of CRIU's: the
readings come from the kernel (`ss`), the "daemon" is a process whose exit the wait sees.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from p4cf_kit.migration.lazy import await_pages, page_bytes_sent


@pytest.fixture
def sender() -> Iterator[tuple[int, threading.Event]]:
    """A server on a loopback port that sends 64 KiB to its one client every 0.2 s until told
    to stop (the event): a page server whose bytes keep moving, then stall."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    stop = threading.Event()
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()

    def feed() -> None:
        while not stop.is_set():
            conn.sendall(bytes(64 << 10))
            time.sleep(0.2)

    def drain() -> None:
        while client.recv(1 << 20):
            pass

    threads = [threading.Thread(target=feed, daemon=True), threading.Thread(target=drain, daemon=True)]
    for t in threads:
        t.start()
    yield port, stop
    stop.set()
    time.sleep(0.3)
    for s in (conn, client, srv):
        s.close()


def test_the_bytes_a_page_server_sent_are_read_from_the_kernel(sender: tuple[int, threading.Event]) -> None:
    port, _ = sender
    time.sleep(0.5)
    first = page_bytes_sent(port)
    assert first is not None and first >= 64 << 10
    time.sleep(0.5)
    later = page_bytes_sent(port)
    assert later is not None and later > first
    assert page_bytes_sent(1) is None          # nothing established there: no reading


def test_a_transfer_that_keeps_moving_is_waited_for_past_the_idle_limit(
        sender: tuple[int, threading.Event]) -> None:
    port, _ = sender
    daemon = subprocess.Popen(["sleep", "3.5"])
    t0 = time.monotonic()
    code, why = await_pages(daemon.poll, None, 1.5, moved=lambda: page_bytes_sent(port))
    assert code == 0 and time.monotonic() - t0 >= 3.4, why


def test_a_stalled_transfer_is_given_up_after_the_idle_limit(sender: tuple[int, threading.Event]) -> None:
    port, stop = sender
    daemon = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(1.0)
        stop.set()                             # the source stops sending: the pages stall
        t0 = time.monotonic()
        code, why = await_pages(daemon.poll, None, 1.5, moved=lambda: page_bytes_sent(port))
        waited = time.monotonic() - t0
    finally:
        daemon.kill()
        daemon.wait()
    assert code is None and "none moved for 1.5 s" in why and "MB of pages had been sent" in why, why
    assert 1.4 <= waited <= 4.0, waited


def test_without_readings_the_limit_counts_from_the_start() -> None:
    daemon = subprocess.Popen(["sleep", "30"])
    try:
        t0 = time.monotonic()
        code, why = await_pages(daemon.poll, None, 0.5)
        waited = time.monotonic() - t0
    finally:
        daemon.kill()
        daemon.wait()
    assert code is None and "none moved for" in why and 0.5 <= waited < 2.0
