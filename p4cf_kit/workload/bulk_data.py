#!/usr/bin/env python3
"""A redis backend's bulk data: N MiB of keys whose values follow from the key and a seed.

Why: the memory a migration moves is a parameter of the experiment, and for redis it must be
real data that a migration could lose. Each value is SHAKE-128 of (seed, key number), so a
check regenerates what every key must hold instead of anyone keeping 1 GiB of values. It runs
inside the backend's container against 127.0.0.1 (the kit ships it there with `podman exec`,
apps/bulk.py), so loading and checking reach exactly that backend and never cross the switch.
Stdlib only, with the client's RESP module beside it.

    python3 bulk_data.py load   --port 8000 --keys 8192 --value-bytes 4090 --seed 7
    python3 bulk_data.py verify --port 8000 --keys 8192 --value-bytes 4090 --seed 7

Each prints one JSON object: `load` the keys written and what redis then holds (INFO memory,
DBSIZE); `verify` the keys present, missing and wrong, and the SHA-256 digests of the values
expected and of those read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the checker reads it as the package module it also is
    from p4cf_kit.workload import resp
else:
    if "resp" not in sys.modules:  # a script beside resp.py; when shipped, apps/bulk.py registers it
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import resp

KEY_PREFIX = b"p4cf:bulk:"
BATCH = 256            # commands per round trip: about 1 MiB of values each way


def key(i: int) -> bytes:
    return KEY_PREFIX + str(i).encode()


def value(seed: int, i: int, size: int) -> bytes:
    """What key `i` holds: `size` bytes that only (seed, i) decide."""
    return hashlib.shake_128(b"%d:%d" % (seed, i)).digest(size)


def _connect(port: int) -> tuple[socket.socket, resp.Reader]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    return sock, resp.Reader(sock)


def _info_field(info: bytes, name: str) -> int:
    for line in info.decode(errors="replace").splitlines():
        if line.startswith(name + ":"):
            return int(line.split(":", 1)[1])
    raise ValueError(f"INFO memory has no {name}")


def held(sock: socket.socket, reader: resp.Reader) -> dict[str, int]:
    """What the server holds now: its allocator's bytes in use and its number of keys."""
    info = resp.call(sock, reader, "INFO", "memory")
    dbsize = resp.call(sock, reader, "DBSIZE")
    assert isinstance(info, bytes) and isinstance(dbsize, int)
    return {"used_memory": _info_field(info, "used_memory"), "dbsize": dbsize}


def load(port: int, keys: int, size: int, seed: int) -> dict[str, Any]:
    """SET every key, BATCH at a time in one write (pipelined), each reply checked."""
    t0 = time.monotonic()
    sock, reader = _connect(port)
    with sock:
        for start in range(0, keys, BATCH):
            end = min(start + BATCH, keys)
            sock.sendall(b"".join(resp.encode("SET", key(i), value(seed, i, size)) for i in range(start, end)))
            for i in range(start, end):
                reply = reader.read()
                if reply != b"OK":
                    raise ValueError(f"SET {key(i).decode()} answered {reply!r}")
        return {"keys": keys, "value_bytes": size, **held(sock, reader),
                "seconds": round(time.monotonic() - t0, 3)}


def verify(port: int, keys: int, size: int, seed: int) -> dict[str, Any]:
    """MGET every key, BATCH at a time; count those present, missing and wrong, digest both sides."""
    t0 = time.monotonic()
    want, seen = hashlib.sha256(), hashlib.sha256()
    present = missing = wrong = 0
    sock, reader = _connect(port)
    with sock:
        for start in range(0, keys, BATCH):
            end = min(start + BATCH, keys)
            values = resp.call(sock, reader, "MGET", *(key(i) for i in range(start, end)))
            if not isinstance(values, list) or len(values) != end - start:
                raise ValueError(f"MGET of {end - start} keys answered {str(values)[:80]}")
            for i, got in zip(range(start, end), values):
                expected = value(seed, i, size)
                want.update(b"%d=%d:" % (i, len(expected)) + expected)
                if got is None:
                    missing += 1
                    seen.update(b"%d=<missing>" % i)
                    continue
                assert isinstance(got, bytes)
                present += 1
                wrong += got != expected
                seen.update(b"%d=%d:" % (i, len(got)) + got)
    return {"keys": keys, "present": present, "missing": missing, "wrong": wrong,
            "digest_written": want.hexdigest(), "digest_read": seen.hexdigest(),
            "seconds": round(time.monotonic() - t0, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load or check a redis backend's bulk data (p4cf:bulk:<i>).")
    parser.add_argument("action", choices=("load", "verify"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("P4CF_PORT", "8000")))
    parser.add_argument("--keys", type=int, required=True)
    parser.add_argument("--value-bytes", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args(argv)
    run = load if args.action == "load" else verify
    print(json.dumps(run(args.port, args.keys, args.value_bytes, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
