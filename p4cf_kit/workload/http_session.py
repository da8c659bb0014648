"""The http workload's connection: HTTP/1.1 keep-alive GETs through http.client (stdlib only).

Runs inside the client container, imported by path. The connection is opened once and never
reopened (`auto_open` off), so a connection the migration broke shows up as an error instead
of being replaced quietly. The kit's server answers with its id, the per-connection request
count and its own address in headers (X-P4CF-Host, X-P4CF-Count, X-P4CF-IP).
"""

from __future__ import annotations

import http.client
import socket


class HttpSession:
    """One persistent HTTP/1.1 connection."""

    def __init__(self, conn_id: int) -> None:
        self.conn_id = conn_id
        self.http: http.client.HTTPConnection | None = None
        self.host = ""
        self.count = ""
        self.server_ip = ""

    def open(self, sock: socket.socket) -> str:
        """Take over a connected socket (http.client would otherwise connect itself)."""
        peer = sock.getpeername()
        self.http = http.client.HTTPConnection(peer[0], peer[1])
        self.http.sock = sock
        self.http.auto_open = 0  # never reconnect behind the kit's back
        return ""

    def request(self, seq: int) -> tuple[str, str]:
        """One GET; (op, detail), detail non-empty on a status other than 200."""
        assert self.http is not None
        self.http.request("GET", f"/?seq={seq}&conn={self.conn_id}")
        response = self.http.getresponse()
        response.read()
        self.host = response.getheader("X-P4CF-Host", "") or ""
        self.count = response.getheader("X-P4CF-Count", "") or ""
        self.server_ip = response.getheader("X-P4CF-IP", "") or ""
        if response.will_close:
            raise ConnectionResetError("the server closed the keep-alive connection")
        return "GET", "" if response.status == 200 else f"status {response.status}"
