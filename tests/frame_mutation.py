"""Seeded frame mutation shared by the parser fuzz tests (Python pipeline and C fast path)."""

from __future__ import annotations

import random


def mutate(rng: random.Random, frame: bytes) -> bytes:
    """Cut, flip bytes, extend, replace with noise, or force the IPv4 etherType."""
    data = bytearray(frame)
    choice = rng.randrange(5)
    if choice == 0:
        return bytes(data[: rng.randrange(len(data) + 1)])
    if choice == 1 and data:
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif choice == 2:
        data += rng.randbytes(rng.randrange(64))
    elif choice == 3:
        return rng.randbytes(rng.randrange(80))
    else:
        data[12:14] = b"\x08\x00"
    return bytes(data)
