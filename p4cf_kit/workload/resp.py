"""RESP2, the Redis protocol, as far as the kit's client needs it (stdlib only).

Runs inside the client container, imported by path as a sibling module. A command is
an array of bulk strings; a reply is one of + - : $ * (RESP2). `Reader` reads replies
from a blocking socket and keeps what it read past the end of one reply for the next.
"""

from __future__ import annotations

import socket

RespValue = bytes | int | None | list["RespValue"]


class RespError(Exception):
    """The server answered with an error reply (`-ERR ...`)."""


def encode(*args: bytes | str | int) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Reader:
    """Replies from one connection, in order."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionResetError("EOF from server")  # an orderly close mid-run is a break too
        self.buffer += data

    def _line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 2]
                return line
            self._fill()

    def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n + 2:
            self._fill()
        data = bytes(self.buffer[:n])
        del self.buffer[: n + 2]
        return data

    def read(self) -> RespValue:
        """One reply; an error reply raises RespError, a malformed one ValueError."""
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exactly(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError(f"not a RESP reply: {line[:40]!r}")


def call(sock: socket.socket, reader: Reader, *args: bytes | str | int) -> RespValue:
    """Send one command and read its reply."""
    sock.sendall(encode(*args))
    return reader.read()
