"""BMv2's `crc16` hash, so the embedded switch picks the same backend as simple_switch.

BMv2 (src/bm_sim/calculations.cpp, `struct crc16` with `table_crc16` from crc_tables.h)
implements CRC-16 with polynomial 0x8005, initial remainder 0, input bytes reflected, the
remainder reflected, final xor 0: the catalogue's CRC-16/ARC ("123456789" -> 0xBB3D).
Reflecting both sides is the same as running the reflected polynomial 0xA001 LSB-first,
which is what the table below does.
"""

from __future__ import annotations

REFLECTED_POLY = 0xA001  # 0x8005 bit-reversed


def _make_table() -> tuple[int, ...]:
    """256 LSB-first remainders of one byte each (computed once at import)."""
    table = []
    for byte in range(256):
        rem = byte
        for _ in range(8):
            rem = (rem >> 1) ^ REFLECTED_POLY if rem & 1 else rem >> 1
        table.append(rem)
    return tuple(table)


_TABLE = _make_table()


def crc16(data: bytes) -> int:
    """CRC-16/ARC of `data`, bit-identical to BMv2's HashAlgorithm.crc16."""
    crc = 0
    table = _TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc
