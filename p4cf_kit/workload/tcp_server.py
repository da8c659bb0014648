#!/usr/bin/env python3
"""Backend TCP server of the workload: answers every request line with who it is.

Runs inside the backend containers as a plain script (stdlib only):

    python3 /opt/p4cf/workload/tcp_server.py --port 8000 --host-id h2

Each reply carries the host identity, the request's sequence number and the
number of requests read on that TCP connection so far (see protocol.py). That
counter lives only in this process's memory: after a live migration with CRIU it
must keep counting, which is how the kit sees that the connection state moved.

Why a single thread over `selectors.PollSelector`: poll() keeps no state in the
kernel between calls (unlike an epoll fd), so a checkpoint taken at any instant
restores into a loop that simply polls again; one thread also means no locks and
a clean stop. Connection open/close go to stdout, one line each, flushed.
SIGTERM or SIGINT closes every connection and exits with status 0.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the checker reads them as the package modules they also are
    from p4cf_kit.workload import protocol
    from p4cf_kit.workload.ballast import TOUCH_EVERY_S, Ballast
else:  # in a container the scripts run alone: the sibling modules, imported by path on purpose
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import protocol
    from ballast import TOUCH_EVERY_S, Ballast

DEFAULT_PORT = 8000
POLL_S = 0.2  # how late a stop request may be noticed


@dataclass
class Connection:
    """One accepted TCP connection and its in-memory state."""

    sock: socket.socket
    peer: str
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)
    count: int = 0


def log(event: str, **fields: object) -> None:
    """Print one `time event k=v ...` line to stdout, flushed (read live by `podman logs`)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 10**9 // 10**6:03d}Z"
    extra = " ".join(f"{k}={v}" for k, v in fields.items())
    print(f"{stamp} {event} {extra}".rstrip(), flush=True)


class Server:
    """The accept/read/reply loop; `stop()` may be called from a signal handler."""

    def __init__(self, bind: str, port: int, host_id: str, ballast_mib: int = 0) -> None:
        self.host_id = host_id
        self.ballast = Ballast(ballast_mib)   # before listening: "listening" means resident
        self.selector = selectors.PollSelector()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((bind, port))
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self.conns: dict[int, Connection] = {}
        self.stopping = False
        self.check_due = False
        self.total_messages = 0

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.listener.getsockname()[:2]
        return host, port

    def stop(self, *_: object) -> None:
        self.stopping = True

    def ask_check(self, *_: object) -> None:
        """SIGUSR1: check the ballast at the next turn of the loop and log the result."""
        self.check_due = True

    def _check_ballast(self) -> None:
        self.check_due = False
        bad = self.ballast.check()
        log("ballast", host=self.host_id, mib=self.ballast.mib, pages=self.ballast.pages, bad_pages=bad,
            ok=bad == 0)

    def serve(self) -> None:
        host, port = self.address
        log("listening", host=self.host_id, addr=f"{host}:{port}", pid=os.getpid(),
            ballast_mib=self.ballast.mib)
        timeout = TOUCH_EVERY_S if self.ballast.mib else POLL_S
        while not self.stopping:
            self.ballast.touch()
            if self.check_due:
                self._check_ballast()
            for key, mask in self.selector.select(timeout):
                if key.data is None:
                    self._accept()
                else:
                    conn: Connection = key.data
                    if mask & selectors.EVENT_READ:
                        self._read(conn)
                    if mask & selectors.EVENT_WRITE and conn.sock.fileno() in self.conns:
                        self._write(conn)
        self._shutdown()

    def _accept(self) -> None:
        try:
            sock, peer = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(sock=sock, peer=f"{peer[0]}:{peer[1]}")
        self.conns[sock.fileno()] = conn
        self.selector.register(sock, selectors.EVENT_READ, conn)
        local = sock.getsockname()
        log("open", peer=conn.peer, local=f"{local[0]}:{local[1]}", conns=len(self.conns))

    def _read(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(conn, reason=type(exc).__name__)
            return
        if not data:
            self._close(conn, reason="eof")
            return
        conn.inbox += data
        try:
            lines = protocol.split_lines(conn.inbox)
            local_ip = conn.sock.getsockname()[0]
            for line in lines:
                if not line:
                    continue
                req = protocol.parse_fields(line)
                conn.count += 1
                self.total_messages += 1
                conn.outbox += protocol.format_reply(
                    self.host_id, int(req.get("seq", -1)), int(req.get("conn", -1)),
                    conn.count, int(req.get("t", 0)), local_ip)
        except (ValueError, UnicodeDecodeError) as exc:
            self._close(conn, reason=f"protocol:{exc}".replace(" ", "_"))
            return
        self._write(conn)

    def _write(self, conn: Connection) -> None:
        error = protocol.flush(self.selector, conn.sock, conn.outbox, conn)
        if error is not None:
            self._close(conn, reason=type(error).__name__)

    def _close(self, conn: Connection, reason: str) -> None:
        fd = conn.sock.fileno()
        self.selector.unregister(conn.sock)
        self.conns.pop(fd, None)
        conn.sock.close()
        log("close", peer=conn.peer, count=conn.count, reason=reason, conns=len(self.conns))

    def _shutdown(self) -> None:
        for conn in list(self.conns.values()):
            self._close(conn, reason="shutdown")
        self.selector.unregister(self.listener)
        self.listener.close()
        self.selector.close()
        log("stopped", host=self.host_id, messages=self.total_messages,
            ballast_bad_pages=self.ballast.check())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="P4CF workload server: replies with host id and per-connection count.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("P4CF_PORT", DEFAULT_PORT)),
                        help="TCP port (env P4CF_PORT; 0 picks a free one, printed on the 'listening' line)")
    parser.add_argument("--bind", default=os.environ.get("P4CF_BIND", "0.0.0.0"), help="address to listen on")
    parser.add_argument("--host-id", default=os.environ.get("P4CF_HOST_ID") or socket.gethostname(),
                        help="identity put in every reply (env P4CF_HOST_ID, e.g. h2)")
    parser.add_argument("--ballast-mib", type=int, default=int(os.environ.get("P4CF_BALLAST_MIB") or 0),
                        help="MiB of memory to hold, written and kept dirty (env P4CF_BALLAST_MIB; see ballast.py)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server = Server(args.bind, args.port, args.host_id, args.ballast_mib)
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    signal.signal(signal.SIGUSR1, server.ask_check)
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
