"""A generic request/response connection for the user's own application (stdlib only).

Runs inside the client container, imported by path. Two framings: `lines` (a request is
one line, the reply is one line) and `length` (a 4-byte big-endian length, then the bytes,
both ways). The request is a template: {seq}, {conn} and {t} (send time, ns) are filled in.
A reply that carries `host=<id>`, `count=<n>` or `ip=<addr>` fields names its backend, the
per-connection count and the server's address, as the kit's echo server does.
"""

from __future__ import annotations

import re
import socket
import struct
import time

MAX_REPLY = 1 << 20
_FIELD = re.compile(rb"\b(host|count|ip)=(\S+)")


class FrameSession:
    """One connection speaking `lines` or `length` framing."""

    def __init__(self, conn_id: int, framing: str, template: str) -> None:
        self.conn_id = conn_id
        self.framing = framing
        self.template = template
        self.sock: socket.socket | None = None
        self.buffer = bytearray()
        self.host = ""
        self.count = ""
        self.server_ip = ""

    def open(self, sock: socket.socket) -> str:
        self.sock = sock
        return ""

    def _fill(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionResetError("EOF from server")
        self.buffer += data
        if len(self.buffer) > MAX_REPLY:
            raise ValueError(f"reply longer than {MAX_REPLY} bytes")

    def _reply(self) -> bytes:
        if self.framing == "lines":
            while b"\n" not in self.buffer:
                self._fill()
            end = self.buffer.index(b"\n")
            reply = bytes(self.buffer[:end]).rstrip(b"\r")
            del self.buffer[: end + 1]
            return reply
        while len(self.buffer) < 4:
            self._fill()
        (size,) = struct.unpack("!I", self.buffer[:4])
        while len(self.buffer) < 4 + size:
            self._fill()
        reply = bytes(self.buffer[4:4 + size])
        del self.buffer[: 4 + size]
        return reply

    def request(self, seq: int) -> tuple[str, str]:
        assert self.sock is not None
        payload = self.template.format(seq=seq, conn=self.conn_id, t=time.time_ns()).encode()
        if self.framing == "lines":
            self.sock.sendall(payload + b"\n")
        else:
            self.sock.sendall(struct.pack("!I", len(payload)) + payload)
        fields = {k.decode(): v.decode(errors="replace") for k, v in _FIELD.findall(self._reply())}
        self.host = fields.get("host", self.host)
        self.count = fields.get("count", "")
        self.server_ip = fields.get("ip", "")
        return self.framing, ""
