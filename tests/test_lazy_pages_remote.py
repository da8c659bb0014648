"""The source machine's watcher of a lazy migration across machines (lazy_pages_remote.py), run
here as a machine would run it over SSH: it writes the checkpoint's runc options for a free port
and says when something listens there. Loopback only; no Podman or CRIU needed."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
from pathlib import Path

from p4cf_kit.migration.lazy_pages_remote import SOURCE_WATCHER


def _line(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> str:
    assert proc.stdout is not None
    assert select.select([proc.stdout], [], [], timeout)[0], "the watcher said nothing"
    return proc.stdout.readline().decode().strip()


def test_watcher_writes_the_runc_options_and_sees_the_page_server_listen(tmp_path: Path) -> None:
    args_file = tmp_path / "gates" / "abc.checkpoint-args"
    proc = subprocess.Popen([sys.executable, "-c", SOURCE_WATCHER, str(args_file), "127.0.0.1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        first = _line(proc)
        assert first.startswith("port ")
        port = int(first.split()[1])
        assert args_file.read_text() == f"--lazy-pages --page-server 127.0.0.1:{port}\n"
        with socket.socket() as server:            # CRIU's page server, as far as the watcher can tell
            server.bind(("127.0.0.1", port))
            server.listen(1)
            assert _line(proc) == "listening"
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_watcher_ends_when_the_kit_calls_it_off(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", SOURCE_WATCHER, str(tmp_path / "x.checkpoint-args"), "127.0.0.1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert _line(proc).startswith("port ")
        assert proc.stdin is not None
        proc.stdin.close()                          # the kit's end of the session goes
        assert _line(proc) == "called off"
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
