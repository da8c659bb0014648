"""The redis workload's connection: SET and GET over RESP, every value read checked (stdlib only).

Runs inside the client container, imported by path. Each connection writes its own keys
(`p4cf:<run>:<conn>:<n>`, a fresh random value each), so every key lives on the backend that
serves that connection. It alternates SET of a new key and GET of one it wrote before, and
compares what it reads with what it wrote. `verify()` reads back every key it wrote (MGET)
and reports their count and a digest of the values, which the kit checks after each migration.
"""

from __future__ import annotations

import hashlib
import random
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the checker reads it as the package module it also is
    from p4cf_kit.workload import resp
else:  # in a container: the sibling module (rr_client.py put its folder on the path)
    import resp

MGET_CHUNK = 500


def _host_of(info: bytes) -> str:
    """The backend's id from `INFO server`: the kit's image names its config file redis-<id>.conf."""
    for line in info.decode(errors="replace").splitlines():
        if line.startswith("config_file:"):
            name = line.split(":", 1)[1].strip().rsplit("/", 1)[-1]
            if name.startswith("redis-") and name.endswith(".conf"):
                return name[len("redis-"):-len(".conf")]
    return ""


class RedisSession:
    """One long-lived connection's keys and the values it expects to read back."""

    def __init__(self, conn_id: int, run_id: str, value_bytes: int) -> None:
        self.conn_id = conn_id
        self.prefix = f"p4cf:{run_id}:{conn_id}:".encode()
        self.value_bytes = value_bytes
        self.rng = random.Random(f"{run_id}:{conn_id}")
        self.expected: dict[bytes, bytes] = {}
        self.keys: list[bytes] = []
        self.host = ""
        self.sock: socket.socket | None = None
        self.reader: resp.Reader | None = None

    def open(self, sock: socket.socket) -> str:
        """Start using `sock`; returns the id of the backend behind it."""
        self.sock = sock
        self.reader = resp.Reader(sock)
        info = resp.call(sock, self.reader, "INFO", "server")
        self.host = _host_of(info) if isinstance(info, bytes) else ""
        return self.host

    def _call(self, *args: bytes | str | int) -> resp.RespValue:
        assert self.sock is not None and self.reader is not None
        return resp.call(self.sock, self.reader, *args)

    def request(self, seq: int) -> tuple[str, str]:
        """One SET (odd seq, or nothing written yet) or GET; returns (op, detail), detail non-empty
        when the value read is not the one written."""
        if seq % 2 or not self.keys:
            key = self.prefix + str(seq).encode()
            value = self.rng.randbytes(self.value_bytes // 2 + 1).hex()[: self.value_bytes].encode()
            reply = self._call("SET", key, value)
            if reply != b"OK":
                return "SET", f"mismatch: SET {key.decode()} answered {reply!r}"
            self.expected[key] = value
            self.keys.append(key)
            return "SET", ""
        key = self.rng.choice(self.keys)
        got = self._call("GET", key)
        if got != self.expected[key]:
            return "GET", f"mismatch: GET {key.decode()} read {got!r}, wrote {self.expected[key]!r}"
        return "GET", ""

    def verify(self) -> dict[str, Any]:
        """Read back every key written: how many are there, missing or wrong, and both digests."""
        want, seen = hashlib.sha256(), hashlib.sha256()
        present = missing = wrong = 0
        for i in range(0, len(self.keys), MGET_CHUNK):
            chunk = self.keys[i:i + MGET_CHUNK]
            values = self._call("MGET", *chunk)
            if not isinstance(values, list) or len(values) != len(chunk):
                raise ValueError(f"MGET of {len(chunk)} keys answered {str(values)[:80]}")
            for key, value in zip(chunk, values):
                want.update(key + b"=" + self.expected[key] + b"\n")
                if value is None:
                    missing += 1
                    seen.update(key + b"=<missing>\n")
                    continue
                assert isinstance(value, bytes)
                present += 1
                wrong += value != self.expected[key]
                seen.update(key + b"=" + value + b"\n")
        return {"keys": len(self.keys), "present": present, "missing": missing, "wrong": wrong,
                "digest_written": want.hexdigest(), "digest_read": seen.hexdigest()}
