"""A direct TCP stream for a transfer between machines: the bytes skip SSH's encryption.

Why: over SSH the images cross at what one core can encrypt (about 110-190 MB/s on our 2-core
VMs), far below a 10 Gbit/s link. With `transfer = "tcp"` for a machine, its end of the
stream is tar_stream.py started over SSH for this one transfer (`python3 -c`, no file left
behind): on a destination it listens on the address the kit reached it at, on a source it
connects back to the address SSH says the kit came from. Either way the first
bytes must be a one-time token handed to it over SSH, so nobody else can feed or read the
stream. The images then cross the machines' link in plain text: use it on a testbed's own
link, not across networks you do not trust.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

from p4cf_kit.migration import tar_stream

TOKEN_BYTES = 16
ACCEPT_TIMEOUT_S = 60.0

PROGRAM = Path(tar_stream.__file__).read_text()


def remote_end(mode: str, *args: str) -> list[str]:
    """The command that runs tar_stream.py's `recv` or `send` end on another machine (at the
    transfer's CPU priority there: tar_stream.ahead)."""
    return ["python3", "-c", PROGRAM, mode, str(tar_stream.transfer_nice()), *args]


def new_token() -> bytes:
    return secrets.token_bytes(TOKEN_BYTES)


def connect(host: str, port: int, token: bytes) -> socket.socket:
    """Open the stream to a receiver and authenticate it with `token`."""
    sock = socket.create_connection((host, port), timeout=ACCEPT_TIMEOUT_S)
    sock.sendall(token)
    sock.setblocking(True)     # sendfile and `tar` use its descriptor directly
    return sock


def listen(host: str) -> socket.socket:
    """A listening socket on `host` (an address the other machine reaches this one at)."""
    srv = socket.socket()
    srv.bind((host, 0))
    srv.listen(1)
    srv.settimeout(ACCEPT_TIMEOUT_S)
    return srv


def accept(srv: socket.socket, token: bytes) -> socket.socket:
    """Accept the sender's connection, blocking, once it has sent `token` (ValueError else);
    nothing past the token is read."""
    conn, _ = srv.accept()
    conn.settimeout(ACCEPT_TIMEOUT_S)
    if tar_stream.recv_exact(conn, len(token)) != token:
        conn.close()
        raise ValueError("the connection did not start with the transfer's token: not our sender")
    conn.setblocking(True)     # `tar` reads its descriptor directly
    return conn
