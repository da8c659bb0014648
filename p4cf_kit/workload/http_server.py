#!/usr/bin/env python3
"""Backend of the http workload: an HTTP/1.1 keep-alive server (http.server, stdlib only).

Runs inside the backend containers as a plain script:

    python3 /opt/p4cf/workload/http_server.py --port 8000 --host-id h2

Every response carries the backend's id (X-P4CF-Host), the number of requests read on this
connection so far (X-P4CF-Count, kept in the handler's memory, so a live migration must keep it
counting) and the server socket's own address (X-P4CF-IP, which follows the host network).
One thread per connection (ThreadingHTTPServer); CRIU checkpoints and restores them all.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    """Answers every GET with a small body; keeps the connection open (HTTP/1.1)."""

    protocol_version = "HTTP/1.1"
    host_id = ""
    count = 0

    def do_GET(self) -> None:
        self.count += 1
        local_ip = self.connection.getsockname()[0]
        body = f"host={self.host_id} count={self.count} ip={local_ip}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-P4CF-Host", self.host_id)
        self.send_header("X-P4CF-Count", str(self.count))
        self.send_header("X-P4CF-IP", local_ip)
        self.end_headers()
        self.wfile.write(body)

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would flood `podman logs`


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="P4CF http workload server (HTTP/1.1 keep-alive).")
    parser.add_argument("--port", type=int, default=int(os.environ.get("P4CF_PORT", "8000")))
    parser.add_argument("--host-id", default=os.environ.get("P4CF_HOST_ID") or socket.gethostname())
    args = parser.parse_args(argv)
    Handler.host_id = args.host_id
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("0.0.0.0", args.port), Handler)
    print(f"listening host={args.host_id} port={args.port} pid={os.getpid()}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
