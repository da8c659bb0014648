"""The line protocol spoken between the workload client and server (stdlib only).

Both programs run as plain scripts inside minimal containers, so they import this
file as a sibling module by path, never through `p4cf_kit`.

One request and one reply per line, ASCII, space-separated `key=value` fields:

    request: seq=<n> conn=<id> t=<send_ns>
    reply:   host=<host-id> seq=<n> conn=<id> count=<k> t=<send_ns> ip=<server-local-ip>

`count` is how many requests the server has read on this TCP connection; it lives
in the server's memory, so a correct live migration keeps it counting. `ip` is the
server socket's local address at reply time, which shows where the backend is
after a migration rewrote its address. `t` is echoed so a reply is self-contained.

Both sides also write lines the same way, non-blocking through a selector (`flush`).
"""

from __future__ import annotations

import selectors
import socket

MAX_LINE = 1024  # longest line either side accepts before calling the peer broken


def format_request(seq: int, conn: int, send_ns: int) -> bytes:
    """Encode one request line."""
    return f"seq={seq} conn={conn} t={send_ns}\n".encode("ascii")


def format_reply(host: str, seq: int, conn: int, count: int, send_ns: int, ip: str) -> bytes:
    """Encode one reply line."""
    return f"host={host} seq={seq} conn={conn} count={count} t={send_ns} ip={ip}\n".encode("ascii")


def parse_fields(line: bytes) -> dict[str, str]:
    """Split a `k=v k=v` line into a dict; raises ValueError on a malformed field."""
    fields: dict[str, str] = {}
    for item in line.decode("ascii").split():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"malformed field {item!r}")
        fields[key] = value
    return fields


def split_lines(buffer: bytearray) -> list[bytes]:
    """Remove and return every complete line in `buffer` (without the newline).

    Raises ValueError when an unterminated line grows past MAX_LINE, which only a
    broken or hostile peer produces.
    """
    lines: list[bytes] = []
    while True:
        end = buffer.find(b"\n")
        if end < 0:
            break
        lines.append(bytes(buffer[:end]).rstrip(b"\r"))
        del buffer[: end + 1]
    if len(buffer) > MAX_LINE:
        raise ValueError(f"line longer than {MAX_LINE} bytes")
    return lines


def flush(selector: selectors.BaseSelector, sock: socket.socket, outbox: bytearray,
          data: object) -> OSError | None:
    """Send what `sock` takes of `outbox` now; watch it for writability only while some is left.

    Returns the send error instead of raising it: each side closes the connection its own way
    (the selector is left as it was then). `data` is the selector key's data for `sock`.
    """
    if outbox:
        try:
            sent = sock.send(outbox)
            del outbox[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            return exc
    wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if outbox else 0)
    if selector.get_key(sock).events != wanted:
        selector.modify(sock, wanted, data)
    return None
