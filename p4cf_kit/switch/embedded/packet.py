"""Header layout and Internet checksums of the frames the load balancer handles.

The program knows three fixed-size headers: Ethernet (14 bytes), IPv4 without options (20) and
TCP without options (20). Offsets below are from the start of an untagged Ethernet frame.

Checksums use one trick for speed in pure Python: the one's-complement sum of 16-bit words of
a buffer is the buffer read as one big-endian integer modulo 0xFFFF (2**16 == 1 mod 0xFFFF),
which CPython computes in C. The only difference is the representation of "minus zero": a
non-zero buffer whose folded sum is 0xFFFF gives 0 modulo 0xFFFF; `ones_sum` maps it back,
so results match BMv2's `csum16` (RFC 1071 with end-around carry) bit for bit.
"""

from __future__ import annotations

from typing import NamedTuple

ETH_LEN = 14
IPV4_LEN = 20
TCP_LEN = 20
ETHERTYPE_IPV4 = 0x0800
PROTO_TCP = 6

# Offsets into the frame.
OFF_ETHERTYPE = 12
OFF_IP = ETH_LEN
OFF_IP_VIHL = 14
OFF_IP_TOTLEN = 16
OFF_IP_FRAG = 20
OFF_IP_TTL = 22
OFF_IP_PROTO = 23
OFF_IP_CSUM = 24
OFF_IP_SRC = 26
OFF_IP_DST = 30
OFF_TCP = ETH_LEN + IPV4_LEN        # 34
OFF_TCP_SPORT = 34
OFF_TCP_DPORT = 36
OFF_TCP_CSUM = OFF_TCP + 16          # 50
MIN_IPV4_FRAME = ETH_LEN + IPV4_LEN  # 34
MIN_TCP_FRAME = OFF_TCP + TCP_LEN    # 54


def ones_sum(data: bytes | bytearray | memoryview) -> int:
    """Folded 16-bit one's-complement sum of `data` (odd length padded with a zero byte).

    Returns 0 only for all-zero data, 0xFFFF for any other data that sums to "minus zero".
    """
    if len(data) & 1:
        data = bytes(data) + b"\x00"
    value = int.from_bytes(data, "big")
    s = value % 0xFFFF
    if s == 0 and value:
        return 0xFFFF
    return s


def add16(a: int, b: int) -> int:
    """One's-complement addition of two 16-bit sums."""
    s = a + b
    return (s & 0xFFFF) + (s >> 16)


def csum16(data: bytes | bytearray | memoryview) -> int:
    """BMv2's `csum16` of a byte string: the complement of its one's-complement sum."""
    return ~ones_sum(data) & 0xFFFF


def ipv4_checksum(header20: bytes | bytearray) -> int:
    """Header checksum of a 20-byte IPv4 header, ignoring what its checksum field holds."""
    return ~add16(ones_sum(header20[:10]), ones_sum(header20[12:20])) & 0xFFFF


def pseudo_header_sum(src: bytes, dst: bytes, proto: int, l4_len: int) -> int:
    """Uncomplemented one's-complement sum of the IPv4 pseudo-header (what a CHECKSUM_PARTIAL
    packet carries in its TCP checksum field)."""
    return ones_sum(src + dst + bytes((0, proto)) + (l4_len & 0xFFFF).to_bytes(2, "big"))


def tcp_checksum(src: bytes, dst: bytes, tcp_len: int, segment: bytes | bytearray | memoryview) -> int:
    """TCP checksum over the pseudo-header and `segment` (TCP header and everything after it),
    ignoring what the checksum field (bytes 16-17 of the segment) holds."""
    body = add16(ones_sum(segment[:16]), ones_sum(segment[18:]) if len(segment) > 18 else 0)
    return ~add16(pseudo_header_sum(src, dst, PROTO_TCP, tcp_len), body) & 0xFFFF


class Parsed(NamedTuple):
    """What the program's parser extracts from a frame (v1model: extraction stops at the first
    header the frame is too short for; that header and the ones after it stay invalid)."""

    ipv4_valid: bool
    tcp_valid: bool
    ttl: int
    proto: int
    src: bytes
    dst: bytes
    sport: bytes
    dport: bytes


def parse(frame: bytes | bytearray | memoryview) -> Parsed | None:
    """Run the program's parser on `frame`; None when there is no valid IPv4 header (the program
    drops all of those, so nothing else about them matters)."""
    if len(frame) < MIN_IPV4_FRAME or frame[12] != 0x08 or frame[13] != 0x00:
        return None
    proto = frame[OFF_IP_PROTO]
    tcp = (proto == PROTO_TCP and frame[OFF_IP_VIHL] & 0x0F == 5
           and not (frame[20] & 0x1F or frame[21]) and len(frame) >= MIN_TCP_FRAME)
    return Parsed(True, tcp, frame[OFF_IP_TTL], proto, bytes(frame[26:30]), bytes(frame[30:34]),
                  bytes(frame[34:36]) if tcp else b"", bytes(frame[36:38]) if tcp else b"")
