"""A direct TCP stream for a transfer between machines: the bytes skip SSH's encryption.

Why: over SSH the images cross at what one core can encrypt (about 110-190 MB/s on our 2-core
VMs), far below a 10 Gbit/s link. With `transfer = "tcp"` for a machine, its end of the
stream is a short Python program started over SSH for this one transfer (`python3 -c`, no
file left behind): on a destination it listens on the address the kit reached it at, on a
source it connects back to the address SSH says the kit came from. Either way the first
bytes must be a one-time token handed to it over SSH, so nobody else can feed or read the
stream. The images then cross the machines' link in plain text: use it on a testbed's own
link, not across networks you do not trust.
"""

from __future__ import annotations

import secrets
import socket
from typing import IO

TOKEN_BYTES = 16
ACCEPT_TIMEOUT_S = 60.0

# Destination: read the token from stdin, listen, print the port, accept one connection that
# starts with the token, and feed the rest to `tar -x` in the folder. Exit status = tar's.
RECEIVER = r"""
import os, socket, subprocess, sys
folder, host = sys.argv[1], sys.argv[2]
token = bytes.fromhex(sys.stdin.readline().strip())
srv = socket.socket(); srv.bind((host, 0)); srv.listen(1); srv.settimeout(60)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept(); conn.settimeout(60)
got = b""
while len(got) < len(token):
    part = conn.recv(len(token) - len(got))
    if not part:
        sys.exit("stream closed before the token")
    got += part
if got != token:
    sys.exit("wrong token: not the kit's stream")
os.makedirs(folder, exist_ok=True)
tar = subprocess.Popen(["tar", "-C", folder, "-xf", "-"], stdin=subprocess.PIPE)
while True:
    data = conn.recv(1 << 20)
    if not data:
        break
    tar.stdin.write(data)
tar.stdin.close()
sys.exit(tar.wait())
"""

# Source: read "HOST PORT TOKEN", wait for "go", connect, send the token, then `tar -c` of the folder.
SENDER = r"""
import socket, subprocess, sys
folder = sys.argv[1]
host, port, token = sys.stdin.readline().split()
if sys.stdin.readline().strip() != "go":
    sys.exit("called off")
conn = socket.create_connection((host, int(port)), timeout=60)
conn.sendall(bytes.fromhex(token))
tar = subprocess.Popen(["tar", "-C", folder, "--exclude=stats-dump", "-cf", "-", "."], stdout=subprocess.PIPE)
while True:
    data = tar.stdout.read(1 << 20)
    if not data:
        break
    conn.sendall(data)
conn.shutdown(socket.SHUT_WR)
sys.exit(tar.wait())
"""


def new_token() -> bytes:
    return secrets.token_bytes(TOKEN_BYTES)


def connect(host: str, port: int, token: bytes) -> socket.socket:
    """Open the stream to a receiver and authenticate it with `token`."""
    sock = socket.create_connection((host, port), timeout=ACCEPT_TIMEOUT_S)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.sendall(token)
    return sock


def listen(host: str) -> socket.socket:
    """A listening socket on `host` (an address the other machine reaches this one at)."""
    srv = socket.socket()
    srv.bind((host, 0))
    srv.listen(1)
    srv.settimeout(ACCEPT_TIMEOUT_S)
    return srv


def accept(srv: socket.socket, token: bytes) -> tuple[socket.socket, IO[bytes]]:
    """Accept the sender's connection; it and its stream after a matching token (ValueError else)."""
    conn, _ = srv.accept()
    conn.settimeout(ACCEPT_TIMEOUT_S)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    stream = conn.makefile("rb")
    if stream.read(len(token)) != token:
        conn.close()
        raise ValueError("the connection did not start with the transfer's token: not our sender")
    return conn, stream
