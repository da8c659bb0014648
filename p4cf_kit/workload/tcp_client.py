#!/usr/bin/env python3
"""Workload client: N long-lived TCP connections to the VIP, every reply logged to CSV.

Runs inside the client container as a plain script (stdlib only):

    python3 /opt/p4cf/workload/tcp_client.py --vip 10.0.0.100 --port 8000 \
        --connections 8 --rate 50 --duration 60 --csv /results/client.csv

Each connection sends `--rate` requests per second (open loop: sending does not
wait for replies, so a frozen backend shows up as late replies, not as a lower
send rate). A reply that is late stays a reply: migration can delay replies by
seconds, so lateness is logged once per stall (`stall` event) and the connection
goes on. Only EOF, a reset or another socket error ends a connection, logged as
`error:<kind>`; a broken connection is never reopened.

CSV columns (header written first, flushed every `--flush-interval` seconds and at
every open/close/error so the lab can read it live through a bind mount):

    conn_id,src_ip,src_port,dst_ip,dst_port,seq,send_ns,recv_ns,rtt_ms,host,
    server_count,event,t_ns,server_ip,detail,op

event is `open`, `reply`, `stall`, `close` or `error:<kind>` (kinds: eof, reset,
broken-pipe, refused, timeout, protocol, or the errno name). All times are
CLOCK_REALTIME nanoseconds (time.time_ns) so they line up with the host's
migration phase timestamps; t_ns is when the row's event happened. On `open` rows
send_ns/recv_ns are when connect() started and finished. `detail` carries the
error text and, on close/error rows, `unanswered=<requests without reply>`.
server_ip is the server socket's own address: it changes when the backend moves,
its host id does not. `op` names the request's operation; this client leaves it empty (the
request/response client of the other workloads, rr_client.py, writes SET, GET, ... there).

At exit a summary JSON (per-connection sent/received/errors) is written beside
the CSV. It says what was never answered: `unanswered` requests per connection and in
total, and for each connection that ended with unanswered requests the time its replies
stopped (`replies_stopped_ns`, its last reply) and for how long (`silent_s`, to the end).
SIGTERM/SIGINT or the end of `--duration` stop sending, wait up to `--drain` seconds for
outstanding replies, close every connection and exit 0 (1 when no connection could be opened
at all).
"""

from __future__ import annotations

import argparse
import csv
import errno
import json
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the checker reads it as the package module it also is
    from p4cf_kit.workload import protocol
else:  # in a container the scripts run alone: the sibling module, imported by path on purpose
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import protocol

COLUMNS = ["conn_id", "src_ip", "src_port", "dst_ip", "dst_port", "seq", "send_ns", "recv_ns",
           "rtt_ms", "host", "server_count", "event", "t_ns", "server_ip", "detail", "op"]
DEFAULT_PORT = 8000
MAX_WAIT_S = 0.05  # longest select() sleep, bounds how late a stop or a stall is noticed
MAX_CATCHUP_S = 0.5  # sends later than this are skipped instead of sent in a burst


@dataclass
class Connection:
    """One client connection: socket, what is in flight, and its counters."""

    conn_id: int
    sock: socket.socket | None = None
    src: tuple[str, int] = ("", 0)
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)
    in_flight: dict[int, int] = field(default_factory=dict)  # seq -> send_ns
    next_seq: int = 1
    next_send: float = 0.0  # monotonic seconds
    last_progress: float = 0.0  # monotonic time of the last reply (or of the open)
    last_reply_ns: int = 0  # wall time of the last reply (or of the open): when replies stopped, if they did
    stalled: bool = False
    sent: int = 0
    received: int = 0
    stalls: int = 0
    error: str | None = None
    hosts: dict[str, int] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.sock is not None


def error_kind(exc: BaseException) -> str:
    """A short stable name for a socket failure, used as `error:<kind>`."""
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, BrokenPipeError):
        return "broken-pipe"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, (ValueError, UnicodeDecodeError)):
        return "protocol"
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno].lower()
    return type(exc).__name__.lower()


class CsvLog:
    """The per-message CSV, flushed often because it is read while being written."""

    def __init__(self, path: str, flush_interval: float) -> None:
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self.file: IO[str] = open(path, "w", newline="", encoding="ascii")
        self.writer = csv.DictWriter(self.file, fieldnames=COLUMNS, extrasaction="raise")
        self.writer.writeheader()
        self.flush_interval = flush_interval
        self.last_flush = time.monotonic()
        self.flush()

    def row(self, urgent: bool = False, **values: Any) -> None:
        self.writer.writerow({k: values.get(k, "") for k in COLUMNS})
        if urgent or time.monotonic() - self.last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        self.file.flush()
        self.last_flush = time.monotonic()

    def close(self) -> None:
        self.flush()
        self.file.close()


class Client:
    """Opens the connections, runs the send/receive loop, writes log and summary."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.interval = 1.0 / args.rate
        self.log = CsvLog(args.csv, args.flush_interval)
        self.selector = selectors.DefaultSelector()
        self.conns = [Connection(conn_id=i) for i in range(args.connections)]
        self.stopping = False
        self.started_ns = time.time_ns()

    def stop(self, *_: object) -> None:
        self.stopping = True

    # -- rows ------------------------------------------------------------
    def _base(self, conn: Connection) -> dict[str, Any]:
        return {"conn_id": conn.conn_id, "src_ip": conn.src[0], "src_port": conn.src[1],
                "dst_ip": self.args.vip, "dst_port": self.args.port}

    def _event(self, conn: Connection, event: str, detail: str = "", **extra: Any) -> None:
        self.log.row(urgent=True, **self._base(conn), event=event, t_ns=time.time_ns(), detail=detail, **extra)

    # -- connection life -------------------------------------------------
    def open_all(self) -> None:
        for conn in self.conns:
            if self.stopping:
                break
            start_ns = time.time_ns()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(self.args.connect_timeout)
            try:
                sock.connect((self.args.vip, self.args.port))
            except OSError as exc:
                sock.close()
                conn.error = error_kind(exc)
                self._event(conn, f"error:{conn.error}", detail=f"connect: {exc}", send_ns=start_ns)
                continue
            if self.args.nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            conn.sock = sock
            conn.src = sock.getsockname()[:2]
            conn.last_reply_ns = time.time_ns()
            self._event(conn, "open", send_ns=start_ns, recv_ns=conn.last_reply_ns)
            self.selector.register(sock, selectors.EVENT_READ, conn)
        # Stagger first sends over one interval so connections do not send in bursts.
        now = time.monotonic()
        live = [c for c in self.conns if c.alive]
        for i, conn in enumerate(live):
            conn.next_send = now + self.interval * i / max(len(live), 1)
            conn.last_progress = now

    def _fail(self, conn: Connection, exc: BaseException | None, kind: str | None = None) -> None:
        if kind is None:
            kind = error_kind(exc) if exc is not None else "unknown"
        conn.error = kind
        detail = f"{exc}" if exc is not None else ""
        self._event(conn, f"error:{conn.error}", detail=f"{detail} unanswered={len(conn.in_flight)}".strip())
        self._drop(conn)

    def _drop(self, conn: Connection) -> None:
        assert conn.sock is not None
        self.selector.unregister(conn.sock)
        conn.sock.close()
        conn.sock = None

    def close_all(self) -> None:
        for conn in self.conns:
            if conn.alive:
                self._event(conn, "close", detail=f"unanswered={len(conn.in_flight)}")
                self._drop(conn)

    # -- traffic ---------------------------------------------------------
    def _send(self, conn: Connection) -> None:
        send_ns = time.time_ns()
        seq = conn.next_seq
        conn.next_seq += 1
        conn.outbox += protocol.format_request(seq, conn.conn_id, send_ns)
        conn.in_flight[seq] = send_ns
        conn.sent += 1
        self._flush_out(conn)

    def _flush_out(self, conn: Connection) -> None:
        assert conn.sock is not None
        error = protocol.flush(self.selector, conn.sock, conn.outbox, conn)
        if error is not None:
            self._fail(conn, error)

    def _receive(self, conn: Connection) -> None:
        assert conn.sock is not None
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(conn, exc)
            return
        if not data:
            self._fail(conn, None, kind="eof")
            return
        recv_ns = time.time_ns()
        conn.inbox += data
        try:
            lines = protocol.split_lines(conn.inbox)
            for line in lines:
                self._reply(conn, protocol.parse_fields(line), recv_ns)
        except (ValueError, UnicodeDecodeError) as exc:
            self._fail(conn, exc)

    def _reply(self, conn: Connection, reply: dict[str, str], recv_ns: int) -> None:
        seq = int(reply["seq"])
        send_ns = conn.in_flight.pop(seq, None)
        detail = "" if send_ns is not None else "unexpected seq"
        if send_ns is None:
            send_ns = int(reply.get("t", 0))
        host = reply.get("host", "")
        conn.received += 1
        conn.hosts[host] = conn.hosts.get(host, 0) + 1
        conn.last_progress = time.monotonic()
        conn.last_reply_ns = recv_ns
        conn.stalled = False
        self.log.row(**self._base(conn), seq=seq, send_ns=send_ns, recv_ns=recv_ns,
                     rtt_ms=f"{(recv_ns - send_ns) / 1e6:.3f}", host=host,
                     server_count=reply.get("count", ""), event="reply", t_ns=recv_ns,
                     server_ip=reply.get("ip", ""), detail=detail)

    def _check_stall(self, conn: Connection, now: float) -> None:
        if conn.in_flight and not conn.stalled and now - conn.last_progress > self.args.stall_after:
            conn.stalled = True
            conn.stalls += 1
            self._event(conn, "stall", detail=f"no reply for {now - conn.last_progress:.3f}s "
                                              f"unanswered={len(conn.in_flight)}")

    def _pump(self, timeout: float) -> None:
        for key, mask in self.selector.select(timeout):
            conn: Connection = key.data
            if mask & selectors.EVENT_READ and conn.alive:
                self._receive(conn)
            if mask & selectors.EVENT_WRITE and conn.alive:
                self._flush_out(conn)

    def run(self) -> int:
        self.open_all()
        end = time.monotonic() + self.args.duration if self.args.duration > 0 else float("inf")
        while not self.stopping:
            live = [c for c in self.conns if c.alive]
            now = time.monotonic()
            if not live or now >= end:
                break
            for conn in live:
                if conn.alive and now >= conn.next_send:
                    self._send(conn)
                    # Catch up a short lag to keep the rate; after a long one (the client
                    # was descheduled) start afresh rather than send a burst.
                    conn.next_send += self.interval
                    if conn.next_send < now - MAX_CATCHUP_S:
                        conn.next_send = now
                if conn.alive:
                    self._check_stall(conn, now)
            soonest = min((c.next_send for c in live if c.alive), default=now + MAX_WAIT_S)
            self._pump(min(max(soonest - time.monotonic(), 0.0), MAX_WAIT_S))
            if time.monotonic() - self.log.last_flush >= self.log.flush_interval:
                self.log.flush()  # quiet spells (a frozen backend) must not hold rows back
        self._drain()
        self.close_all()
        return 0 if any(c.src[1] for c in self.conns) else 1

    def finish(self) -> None:
        """Close the log and write the summary, whatever ended the run."""
        self.log.close()
        self.write_summary()

    def _drain(self) -> None:
        """Wait a little for replies already in flight, so the log ends complete."""
        deadline = time.monotonic() + self.args.drain
        while time.monotonic() < deadline and any(c.alive and c.in_flight for c in self.conns):
            self._pump(MAX_WAIT_S)

    def _stopped(self, conn: Connection, finished_ns: int) -> dict[str, Any] | None:
        """When a connection's replies stopped for good: it ended (or broke) with requests that
        no reply answered. None when every request was answered."""
        if not conn.in_flight or not conn.src[1]:
            return None
        return {"stopped_ns": conn.last_reply_ns, "silent_s": round((finished_ns - conn.last_reply_ns) / 1e9, 3),
                "oldest_unanswered_ns": min(conn.in_flight.values())}

    def write_summary(self) -> None:
        finished_ns = time.time_ns()
        stopped = {c.conn_id: self._stopped(c, finished_ns) for c in self.conns}
        summary = {
            "started_ns": self.started_ns,
            "finished_ns": finished_ns,
            "vip": self.args.vip,
            "port": self.args.port,
            "connections_requested": self.args.connections,
            "rate_per_connection": self.args.rate,
            "duration_s": self.args.duration,
            "totals": {
                **connection_totals(self.conns),
                "stalls": sum(c.stalls for c in self.conns),
                "unanswered": sum(len(c.in_flight) for c in self.conns),
                "replies_stopped": sum(1 for v in stopped.values() if v is not None),
                "longest_silence_s": max((v["silent_s"] for v in stopped.values() if v is not None),
                                         default=0.0),
            },
            "connections": [
                {"conn_id": c.conn_id, "src_ip": c.src[0], "src_port": c.src[1], "sent": c.sent,
                 "received": c.received, "unanswered": len(c.in_flight), "stalls": c.stalls,
                 "error": c.error, "hosts": c.hosts,
                 "replies_stopped_ns": (stopped[c.conn_id] or {}).get("stopped_ns"),
                 "silent_s": (stopped[c.conn_id] or {}).get("silent_s", 0.0)}
                for c in self.conns
            ],
        }
        with open(self.args.summary, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
            fh.write("\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        description="P4CF workload client: N connections to VIP:PORT, every reply logged.")
    parser.add_argument("--vip", default=env("P4CF_VIP"), help="address to connect to (env P4CF_VIP)")
    parser.add_argument("--port", type=int, default=int(env("P4CF_PORT", DEFAULT_PORT)),
                        help="TCP port (env P4CF_PORT)")
    parser.add_argument("--connections", "-n", type=int, default=8, help="concurrent connections (default 8)")
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--rate", type=float, default=50.0, help="requests/s per connection (default 50)")
    rate.add_argument("--total-rate", type=float, help="requests/s over all connections (split evenly)")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds to run; 0 = until SIGTERM/SIGINT")
    parser.add_argument("--csv", default=env("P4CF_CLIENT_CSV", "client.csv"),
                        help="CSV log path (env P4CF_CLIENT_CSV)")
    parser.add_argument("--summary", help="summary JSON path (default: CSV path with .summary.json)")
    parser.add_argument("--nodelay", action=argparse.BooleanOptionalAction, default=True, help="set TCP_NODELAY")
    parser.add_argument("--stall-after", type=float, default=1.0,
                        help="log one `stall` event when no reply came for this many seconds (never closes)")
    parser.add_argument("--connect-timeout", type=float, default=3.0, help="seconds allowed for each connect")
    parser.add_argument("--drain", type=float, default=1.0, help="seconds to wait for in-flight replies at the end")
    parser.add_argument("--flush-interval", type=float, default=0.5, help="seconds between CSV flushes")
    args = parser.parse_args(argv)
    if not args.vip:
        parser.error("--vip is required (or set P4CF_VIP)")
    if args.connections < 1:
        parser.error("--connections must be at least 1")
    if args.total_rate is not None:
        args.rate = args.total_rate / args.connections
    if args.rate <= 0:
        parser.error("the rate must be positive")
    args.summary = args.summary or summary_path(args.csv)
    return args


class Counted(Protocol):
    src: tuple[str, int]
    error: str | None
    sent: int
    received: int


def connection_totals(conns: Sequence[Counted]) -> dict[str, int]:
    """The totals every workload's client reports the same way (a connection whose source port
    is 0 never opened; one with an error after opening broke)."""
    return {"opened": sum(1 for c in conns if c.src[1]),
            "failed_to_open": sum(1 for c in conns if not c.src[1]),
            "broken": sum(1 for c in conns if c.error and c.src[1]),
            "sent": sum(c.sent for c in conns),
            "received": sum(c.received for c in conns)}


def summary_path(csv: str) -> str:
    """Where a client's summary JSON goes by default: beside its CSV log."""
    return csv.removesuffix(".csv") + ".summary.json"


class Runnable(Protocol):
    def run(self) -> int: ...

    def stop(self, *_: object) -> None: ...

    def finish(self) -> None: ...


def run_until_stopped(client: Runnable) -> int:
    """Run a client until its duration ends or SIGTERM/SIGINT, then write its summary (every
    workload's client ends the same way, so a stopped run still leaves its log complete)."""
    signal.signal(signal.SIGTERM, client.stop)
    signal.signal(signal.SIGINT, client.stop)
    try:
        return client.run()
    finally:
        client.finish()


def main(argv: list[str] | None = None) -> int:
    return run_until_stopped(Client(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
