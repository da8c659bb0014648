"""P4Runtime bytestrings: canonical encoding, width checks, and the error every check raises.

P4Runtime carries bit<W> values as big-endian bytestrings. Writers may pad with leading zero
bytes; the server accepts any length whose value fits W bits and always answers with the
canonical form (shortest string, b"\\x00" for zero), so reads are byte-identical to what
p4runtime-shell sends.
"""

from __future__ import annotations

import grpc

from p4cf_kit.errors import P4RuntimeError


def encode(value: int) -> bytes:
    """The canonical bytestring of a non-negative int (shortest big-endian, zero is b"\\x00")."""
    if value < 0:
        raise ValueError(f"P4Runtime bytestrings hold unsigned values, got {value}")
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def decode(data: bytes, bitwidth: int, *what: str) -> int:
    """The int a bytestring holds, checked against `bitwidth` bits.

    Empty strings and values wider than the field (however many zero bytes pad them: the
    receiver checks the value, not the string's length) are INVALID_ARGUMENT, as spec 9.1.1 and
    9.1.2 say for match values and action parameters (8.3's OUT_OF_RANGE is the general rule).
    `what` names the value in the error, in parts joined by spaces only on error (every
    Write decodes several values; most are fine).
    """
    value = int.from_bytes(data, "big")
    if value >> bitwidth or not data:
        name = " ".join(what)
        if not data:
            raise P4RuntimeError(grpc.StatusCode.INVALID_ARGUMENT, f"{name}: empty bytestring")
        raise P4RuntimeError(grpc.StatusCode.INVALID_ARGUMENT,
                             f"{name}: value 0x{value:x} does not fit in {bitwidth} bits")
    return value


def canonical(data: bytes, bitwidth: int, what: str) -> bytes:
    """The canonical form of an accepted bytestring (validates like `decode`)."""
    return encode(decode(data, bitwidth, what))
