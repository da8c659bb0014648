#!/usr/bin/env python3
"""Request/response client of the redis, http and custom workloads: one thread per connection.

Runs inside the client container as a plain script (stdlib only):

    python3 /opt/p4cf/workload/rr_client.py --mode redis --vip 10.0.0.100 --port 8000 \
        --connections 8 --rate 50 --duration 60 --csv /data/client.csv

It writes the echo client's CSV (tcp_client.COLUMNS: the same analysis reads both) with the
operation of each request in `op` (SET, GET, lines, length), and the same summary JSON at exit.
Each connection sends one request, waits for its reply, and sends the next on a fixed
schedule of `--rate` per second; a reply that comes late delays the requests behind it, and
its send and receive times say so. A connection is opened once; a socket error, EOF or a
reply later than `--reply-timeout` ends it (`error:<kind>`) and it is never reopened.

Data checks (redis): a file `verify-<k>.request` appearing beside the CSV asks every live
connection to read back all the keys it wrote; each logs a `verify` row and the client
writes `verify-<k>.json` with the totals (keys, missing, wrong, digests).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the checker reads them as the package modules they also are
    from p4cf_kit.workload.frame_session import FrameSession
    from p4cf_kit.workload.http_session import HttpSession
    from p4cf_kit.workload.redis_session import RedisSession
    from p4cf_kit.workload.tcp_client import (
        COLUMNS,
        CsvLog,
        connection_totals,
        error_kind,
        run_until_stopped,
        summary_path,
    )
else:  # in a container the scripts run alone: sibling modules, imported by path on purpose
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from frame_session import FrameSession
    from http_session import HttpSession
    from redis_session import RedisSession
    from tcp_client import COLUMNS, CsvLog, connection_totals, error_kind, run_until_stopped, summary_path

MODES = ("redis", "http", "lines", "length")
VERIFY_POLL_S = 0.05
VERIFY_TIMEOUT_S = 60.0
MAX_CATCHUP_S = 0.5


class Session(Protocol):
    host: str

    def open(self, sock: socket.socket) -> str: ...

    def request(self, seq: int) -> tuple[str, str]: ...


@dataclass
class Conn:
    """One connection's thread state and counters."""

    conn_id: int
    src: tuple[str, int] = ("", 0)
    sent: int = 0
    received: int = 0
    mismatches: int = 0
    error: str | None = None
    in_flight_ns: int = 0      # send time of a request still waiting for its reply
    last_reply_ns: int = 0
    hosts: dict[str, int] = field(default_factory=dict)
    verify_asked: list[int] = field(default_factory=list)
    alive: bool = False


class Client:
    """Starts the connection threads, answers data-check requests, writes log and summary."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.log = CsvLog(args.csv, args.flush_interval)
        self.lock = threading.Lock()
        self.conns = [Conn(i) for i in range(args.connections)]
        self.stopping = threading.Event()
        self.started_ns = time.time_ns()
        self.verify_results: dict[int, dict[int, dict[str, Any]]] = {}
        self.run_id = args.run_id or f"{self.started_ns:x}"

    def stop(self, *_: object) -> None:
        self.stopping.set()

    def row(self, conn: Conn, event: str, urgent: bool = False, **values: Any) -> None:
        base = {"conn_id": conn.conn_id, "src_ip": conn.src[0], "src_port": conn.src[1],
                "dst_ip": self.args.vip, "dst_port": self.args.port, "event": event}
        with self.lock:
            if not self.log.file.closed:  # a thread still waiting at exit writes nothing more
                self.log.row(urgent=urgent, **base, **values)

    def session(self, conn_id: int) -> Session:
        mode = self.args.mode
        made: Session  # typed here: the siblings are imported by path, unknown to a type checker
        if mode == "redis":
            made = RedisSession(conn_id, self.run_id, self.args.value_bytes)
        elif mode == "http":
            made = HttpSession(conn_id)
        else:
            made = FrameSession(conn_id, mode, self.args.request)
        return made

    # -- one connection ----------------------------------------------------------------------
    def run_conn(self, conn: Conn, first_send: float, end: float) -> None:
        session = self.session(conn.conn_id)
        start_ns = time.time_ns()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.args.connect_timeout)
            sock.connect((self.args.vip, self.args.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.src = sock.getsockname()[:2]
            sock.settimeout(self.args.reply_timeout)
            session.open(sock)
        except (OSError, ValueError) as exc:
            sock.close()
            conn.error = error_kind(exc)
            self.row(conn, f"error:{conn.error}", urgent=True, send_ns=start_ns, t_ns=time.time_ns(),
                     detail=f"connect: {exc}")
            return
        conn.alive = True
        conn.last_reply_ns = time.time_ns()
        self.row(conn, "open", urgent=True, send_ns=start_ns, recv_ns=conn.last_reply_ns,
                 t_ns=conn.last_reply_ns, host=session.host)
        next_send = first_send
        seq = 0
        try:
            while not self.stopping.is_set() and time.monotonic() < end:
                if conn.verify_asked:
                    self.verify(conn, session, conn.verify_asked.pop(0))
                    continue
                wait = next_send - time.monotonic()
                if wait > 0:
                    self.stopping.wait(min(wait, VERIFY_POLL_S))
                    continue
                seq += 1
                send_ns = conn.in_flight_ns = time.time_ns()
                conn.sent += 1
                op, detail = session.request(seq)
                recv_ns = time.time_ns()
                conn.in_flight_ns = 0
                conn.received += 1
                conn.last_reply_ns = recv_ns
                conn.hosts[session.host] = conn.hosts.get(session.host, 0) + 1
                if detail.startswith("mismatch"):
                    conn.mismatches += 1
                self.row(conn, "reply", seq=seq, send_ns=send_ns, recv_ns=recv_ns,
                         rtt_ms=f"{(recv_ns - send_ns) / 1e6:.3f}", host=session.host,
                         server_count=getattr(session, "count", ""), t_ns=recv_ns,
                         server_ip=getattr(session, "server_ip", ""), detail=detail, op=op,
                         urgent=bool(detail))
                next_send += 1.0 / self.args.rate
                if next_send < time.monotonic() - MAX_CATCHUP_S:
                    next_send = time.monotonic()
        except (OSError, ValueError, Exception) as exc:  # noqa: BLE001  (any failure ends this connection)
            conn.error = "eof" if "EOF" in str(exc) else error_kind(exc)
            conn.alive = False
            unanswered = 1 if conn.in_flight_ns else 0
            self.row(conn, f"error:{conn.error}", urgent=True, t_ns=time.time_ns(),
                     detail=f"{exc} unanswered={unanswered}".strip())
            sock.close()
            return
        conn.alive = False
        self.row(conn, "close", urgent=True, t_ns=time.time_ns(), detail="unanswered=0")
        sock.close()

    def verify(self, conn: Conn, session: Session, k: int) -> None:
        t0 = time.time_ns()
        checker = getattr(session, "verify", None)
        result: dict[str, Any] = checker() if checker is not None else {"keys": 0}
        result.update(conn_id=conn.conn_id, host=session.host, seconds=round((time.time_ns() - t0) / 1e9, 3))
        self.row(conn, "verify", seq=k, t_ns=time.time_ns(), host=session.host, urgent=True,
                 detail=" ".join(f"{key}={result[key]}" for key in ("keys", "missing", "wrong") if key in result))
        with self.lock:
            self.verify_results.setdefault(k, {})[conn.conn_id] = result

    # -- data-check requests -----------------------------------------------------------------
    def watch_verify(self, pending: dict[int, float]) -> None:
        """Hand new `verify-<k>.request` files to the live connections; answer finished ones."""
        folder = os.path.dirname(os.path.abspath(self.args.csv))
        for name in os.listdir(folder):
            if name.startswith("verify-") and name.endswith(".request"):
                k = int(name[len("verify-"):-len(".request")])
                if k not in pending:
                    pending[k] = time.monotonic()
                    for conn in self.conns:
                        if conn.alive:
                            conn.verify_asked.append(k)
        for k, since in list(pending.items()):
            with self.lock:
                done = dict(self.verify_results.get(k, {}))
            waiting = [c.conn_id for c in self.conns if c.alive and c.conn_id not in done]
            if waiting and time.monotonic() - since < VERIFY_TIMEOUT_S:
                continue
            per_conn = list(done.values())
            answer = {"request": k, "connections": len(per_conn),
                      "unverified_connections": sorted(c.conn_id for c in self.conns if c.conn_id not in done),
                      "keys": sum(int(r.get("keys", 0)) for r in per_conn),
                      "present": sum(int(r.get("present", 0)) for r in per_conn),
                      "missing": sum(int(r.get("missing", 0)) for r in per_conn),
                      "wrong": sum(int(r.get("wrong", 0)) for r in per_conn),
                      "digests_match": all(r.get("digest_written") == r.get("digest_read") for r in per_conn),
                      "per_connection": per_conn}
            path = os.path.join(folder, f"verify-{k}.json")
            with open(path + ".tmp", "w", encoding="utf-8") as fh:
                json.dump(answer, fh, indent=1)
            os.replace(path + ".tmp", path)
            os.unlink(os.path.join(folder, f"verify-{k}.request"))
            del pending[k]

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> int:
        now = time.monotonic()
        end = now + self.args.duration if self.args.duration > 0 else float("inf")
        interval = 1.0 / self.args.rate
        threads = [threading.Thread(target=self.run_conn, daemon=True,
                                    args=(c, now + interval * i / len(self.conns), end))
                   for i, c in enumerate(self.conns)]
        for thread in threads:
            thread.start()
        pending: dict[int, float] = {}
        while any(t.is_alive() for t in threads) and not self.stopping.is_set():
            self.watch_verify(pending)
            self.stopping.wait(VERIFY_POLL_S)
            with self.lock:
                if time.monotonic() - self.log.last_flush >= self.log.flush_interval:
                    self.log.flush()
        self.stopping.set()
        deadline = time.monotonic() + self.args.drain
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        return 0 if any(c.src[1] for c in self.conns) else 1

    def finish(self) -> None:
        with self.lock:
            self.log.close()
        self.write_summary()

    def write_summary(self) -> None:
        finished_ns = time.time_ns()

        def stopped(c: Conn) -> dict[str, Any] | None:
            if not c.in_flight_ns or not c.src[1]:
                return None
            return {"stopped_ns": c.last_reply_ns, "silent_s": round((finished_ns - c.last_reply_ns) / 1e9, 3)}

        stops = {c.conn_id: stopped(c) for c in self.conns}
        summary = {
            "started_ns": self.started_ns, "finished_ns": finished_ns, "mode": self.args.mode,
            "run_id": self.run_id, "vip": self.args.vip, "port": self.args.port,
            "connections_requested": self.args.connections, "rate_per_connection": self.args.rate,
            "duration_s": self.args.duration,
            "totals": {
                **connection_totals(self.conns),
                "stalls": 0,
                "unanswered": sum(1 for c in self.conns if c.in_flight_ns),
                "mismatches": sum(c.mismatches for c in self.conns),
                "replies_stopped": sum(1 for v in stops.values() if v is not None),
                "longest_silence_s": max((v["silent_s"] for v in stops.values() if v is not None), default=0.0),
            },
            "connections": [
                {"conn_id": c.conn_id, "src_ip": c.src[0], "src_port": c.src[1], "sent": c.sent,
                 "received": c.received, "unanswered": 1 if c.in_flight_ns else 0, "stalls": 0,
                 "mismatches": c.mismatches, "error": c.error, "hosts": c.hosts,
                 "replies_stopped_ns": (stops[c.conn_id] or {}).get("stopped_ns"),
                 "silent_s": (stops[c.conn_id] or {}).get("silent_s", 0.0)}
                for c in self.conns],
        }
        with open(self.args.summary, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
            fh.write("\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="P4CF request/response client (redis, http, lines, length).")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--vip", default=env("P4CF_VIP"), help="address to connect to (env P4CF_VIP)")
    parser.add_argument("--port", type=int, default=int(env("P4CF_PORT", "8000")), help="TCP port")
    parser.add_argument("--connections", "-n", type=int, default=8, help="concurrent connections (default 8)")
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s per connection (default 50)")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds to run; 0 = until SIGTERM")
    parser.add_argument("--csv", default="client.csv", help="CSV log path")
    parser.add_argument("--summary", help="summary JSON path (default: CSV path with .summary.json)")
    parser.add_argument("--request", default="PING", help="lines/length: request template ({seq} {conn} {t})")
    parser.add_argument("--value-bytes", type=int, default=32, help="redis: bytes per value written")
    parser.add_argument("--run-id", default="", help="redis: key prefix of this run (default: its start time)")
    parser.add_argument("--connect-timeout", type=float, default=3.0)
    parser.add_argument("--reply-timeout", type=float, default=30.0,
                        help="a reply later than this ends the connection (error:timeout)")
    parser.add_argument("--drain", type=float, default=2.0, help="seconds to wait for replies in flight at the end")
    parser.add_argument("--flush-interval", type=float, default=0.5, help="seconds between CSV flushes")
    args = parser.parse_args(argv)
    if not args.vip:
        parser.error("--vip is required (or set P4CF_VIP)")
    if args.connections < 1 or args.rate <= 0:
        parser.error("--connections must be at least 1 and --rate positive")
    args.summary = args.summary or summary_path(args.csv)
    return args


def main(argv: list[str] | None = None) -> int:
    return run_until_stopped(Client(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["COLUMNS", "Client", "main"]
