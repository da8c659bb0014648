"""The frame layout the load balancer handles, its named tests, and Internet checksums.

The program knows three fixed-size headers: Ethernet (14 bytes), IPv4 without options (20) and
TCP without options (20). Offsets below are from the start of an untagged Ethernet frame. This
module owns that layout for the Python side (the pipeline, the data plane, the kernel fast
path's offload); `layout.h` holds the same constants for the C side (the C fast path, the eBPF
program and its loader), and tests/test_layout.py checks that the two agree.

Checksums use one trick for speed in pure Python: the one's-complement sum of 16-bit words of
a buffer is the buffer read as one big-endian integer modulo 0xFFFF (2**16 == 1 mod 0xFFFF),
which CPython computes in C. The only difference is the representation of "minus zero": a
non-zero buffer whose folded sum is 0xFFFF gives 0 modulo 0xFFFF; `ones_sum` maps it back,
so results match BMv2's `csum16` (RFC 1071 with end-around carry) bit for bit.
"""

from __future__ import annotations

from typing import NamedTuple

Frame = bytes | bytearray | memoryview

ETH_LEN = 14
IPV4_LEN = 20
TCP_LEN = 20
UDP_LEN = 8
ETHERTYPE_IPV4 = 0x0800
IPV4_NO_OPTIONS = 0x45   # version 4, header length 5 words
PROTO_TCP = 6
PROTO_UDP = 17

# Offsets into the frame.
OFF_ETHERTYPE = 12
OFF_IP = ETH_LEN
OFF_IP_VIHL = 14
OFF_IP_TOTLEN = 16
OFF_IP_FRAG = 20         # flags (reserved, DF, MF) and fragment offset, 16 bits
OFF_IP_TTL = 22
OFF_IP_PROTO = 23
OFF_IP_CSUM = 24
OFF_IP_SRC = 26
OFF_IP_DST = 30
OFF_L4 = ETH_LEN + IPV4_LEN          # 34: TCP or UDP header, ports first
OFF_TCP = OFF_L4
OFF_TCP_SPORT = OFF_L4
OFF_TCP_DPORT = 36
OFF_L4_DPORT = OFF_TCP_DPORT
OFF_TCP_DOFF = OFF_TCP + 12          # 46: data offset, high nibble, in 32-bit words
OFF_TCP_CSUM = OFF_TCP + 16          # 50
MIN_IPV4_FRAME = ETH_LEN + IPV4_LEN  # 34: shorter frames have no IPv4 header
MIN_KEY_FRAME = OFF_L4 + 4           # 38: ... and the L4 ports, what a flow key reads
MIN_TCP_FRAME = OFF_TCP + TCP_LEN    # 54: ... and a whole TCP header

# Masks of the frame's byte at OFF_IP_FRAG (the next one holds the offset's low 8 bits).
FRAG_OFFSET_HI = 0x1F      # the fragment offset: a later fragment has no L4 header
FRAG_MF_OFFSET_HI = 0x3F   # ... and "more fragments": a first fragment has one, but partial

# Sizes of the program's fields the fast paths index by.
SELECT_SLOTS = 1 << 14     # ecmp_select is bit<14>: ecmp_nhop entries and their counters
PORT_SLOTS = 512           # egress ports are bit<9>
DROP_PORT = 511            # v1model's drop port
NO_SELECT = 0xFFFF         # a fast-path action whose flow no counter counts


def is_ipv4(frame: Frame) -> bool:
    """Long enough for an IPv4 header and with the IPv4 etherType (the program's parser)."""
    return (len(frame) >= MIN_IPV4_FRAME and frame[OFF_ETHERTYPE] == ETHERTYPE_IPV4 >> 8
            and frame[OFF_ETHERTYPE + 1] == ETHERTYPE_IPV4 & 0xFF)


def starts_datagram(frame: Frame) -> bool:
    """Fragment offset 0: a whole datagram or its first fragment, so the L4 header is here.
    The program's parser reads TCP only then (it ignores "more fragments")."""
    return not (frame[OFF_IP_FRAG] & FRAG_OFFSET_HI or frame[OFF_IP_FRAG + 1])


def whole_datagram(frame: Frame) -> bool:
    """Not a fragment at all: offset 0 and no "more fragments". Stricter than
    `starts_datagram`: a first fragment's L4 checksum covers bytes in the other fragments, so
    the kernel fast path can neither verify it nor keep it right by incremental updates (the
    program recomputes it over the fragment's bytes); such frames stay in user space."""
    return not (frame[OFF_IP_FRAG] & FRAG_MF_OFFSET_HI or frame[OFF_IP_FRAG + 1])


def kernel_can_take(frame: Frame) -> bool:
    """Whether the kernel fast path would forward `frame` once its flow is learnt: untagged
    IPv4 without options, a whole datagram, TTL > 1 (the program drops 0 and 1), a whole TCP
    header's worth of bytes and no Ethernet padding (total length + 14 == frame length). The
    eBPF program (forward.bpf.c, `can_take`) tests the same and, in the kernel only, that the
    header checksum verifies."""
    return (len(frame) >= MIN_TCP_FRAME and is_ipv4(frame)
            and frame[OFF_IP_VIHL] == IPV4_NO_OPTIONS and whole_datagram(frame)
            and frame[OFF_IP_TTL] >= 2
            and ((frame[OFF_IP_TOTLEN] << 8) | frame[OFF_IP_TOTLEN + 1]) + ETH_LEN == len(frame))


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


def parse(frame: Frame) -> Parsed | None:
    """Run the program's parser on `frame`; None when there is no valid IPv4 header (the program
    drops all of those, so nothing else about them matters)."""
    if not is_ipv4(frame):
        return None
    proto = frame[OFF_IP_PROTO]
    tcp = (proto == PROTO_TCP and frame[OFF_IP_VIHL] & 0x0F == IPV4_NO_OPTIONS & 0x0F
           and starts_datagram(frame) and len(frame) >= MIN_TCP_FRAME)
    return Parsed(True, tcp, frame[OFF_IP_TTL], proto, bytes(frame[OFF_IP_SRC:OFF_IP_DST]),
                  bytes(frame[OFF_IP_DST:OFF_L4]),
                  bytes(frame[OFF_TCP_SPORT:OFF_TCP_DPORT]) if tcp else b"",
                  bytes(frame[OFF_TCP_DPORT:MIN_KEY_FRAME]) if tcp else b"")
