"""The kernel fast path program: forward a learnt flow at tc ingress, as the P4 program would.

One program per switch port (its P4 port number is a constant in the code), attached with tcx
to the port's ingress. For a frame it can take (untagged IPv4 without options or fragments,
TTL > 1, no Ethernet padding, a valid header checksum, at least 54 bytes) it looks the flow up
by the 12 bytes at offset 26 (addresses and ports). An entry of the current generation holds
what the user-space pipeline decided for that flow: it bumps the `ecmp_nhop` direct counter
(per-CPU, packets = GSO segments, bytes = the sum of the segments' frame lengths, as the user
path counts), decrements TTL, rewrites addresses and MACs with incremental checksum updates
(RFC 1624; the TCP one pseudo-header aware, so CHECKSUM_PARTIAL and GSO frames stay right),
and redirects the frame to the egress port. Everything else goes on unchanged (TC_ACT_OK) to
the switch's packet sockets, which are bound to ETH_P_IP and so see a frame only after this
program has let it pass: each frame is handled exactly once, by one path or the other.

Frames that are not IPv4 at all are only counted (received and dropped, as the program drops
them); the kernel below does what it always did with them.
"""

from __future__ import annotations

import struct

from p4cf_kit.switch.embedded.ebpf.asm import FP, R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, Program

# helpers (enum bpf_func_id)
MAP_LOOKUP_ELEM, SKB_STORE_BYTES, L3_CSUM_REPLACE, L4_CSUM_REPLACE = 1, 9, 10, 11
REDIRECT, SKB_LOAD_BYTES, CSUM_DIFF = 23, 26, 28
TC_ACT_OK, TC_ACT_SHOT = 0, 2
F_PSEUDO_HDR = 1 << 4

# struct __sk_buff offsets
SKB_LEN, SKB_PROTOCOL, SKB_VLAN_PRESENT, SKB_GSO_SIZE = 0, 16, 20, 176
ETH_P_IP_BE = 0x0008  # htons(ETH_P_IP) as the u32 field reads on a little-endian machine

HDR = 54          # bytes copied to the stack: Ethernet, IPv4 (no options), TCP
BUF = -74         # stack offset of that copy: +26 lands 4-aligned, +14 2-aligned
SCRATCH = -80     # a u32 map key
PSEUDO = -88      # the TCP pseudo-header sum, while the segment is summed
CHUNK = 256       # segment bytes summed per helper call
SEG = -352        # stack buffer for them, room for a tail rounded up to 4 (CHUNK + 8)
SEG_CHUNKS = 5    # full chunks at most: TCP segments up to 5 * 256 + 255 bytes are verified

# Flow entry value (see FLOW_VALUE): the pipeline's decision for one flow.
FLOW_KEY_LEN = 12
FLOW_VALUE = struct.Struct("<QIHHBB12sH4s4sHHI")
V_GEN, V_IFINDEX, V_SLOT, V_EGRESS, V_FLAGS, V_MACS, V_SRC, V_DST = 0, 8, 12, 14, 16, 18, 32, 36
V_DEP, V_DEP_GEN = 40, 44  # the ecmp_nhop key the decision looked up, and its generation then
F_TTL_DEC, F_SRC, F_DST, F_TCP = 1, 2, 4, 8
NO_SLOT = 0xFFFF

COUNTER_VALUE = struct.Struct("<QQ")       # packets, bytes (per CPU)
PORT_VALUE = struct.Struct("<QQQ")         # rx, tx, dropped frames (per CPU)
MAX_PORTS = 512


def flow_value(generation: int, ifindex: int, slot: int, egress: int, flags: int,
               macs: bytes, src: bytes, dst: bytes, dep: int, dep_gen: int) -> bytes:
    """Pack one flow entry's value."""
    return FLOW_VALUE.pack(generation, ifindex, slot, egress, flags, 0, macs, 0, src, dst, dep, 0, dep_gen)


def build(port: int, flows_fd: int, gen_fd: int, counters_fd: int, ports_fd: int,
          slot_gens_fd: int) -> bytes:
    """The program for P4 port `port`, using the given maps."""
    p = Program()
    p.mov(R6, R1, reg=True)                                   # r6 = skb
    p.load(R1, R6, SKB_PROTOCOL, 4)
    p.jump_if(R1, "!=", ETH_P_IP_BE, "not_ipv4")
    p.load(R1, R6, SKB_VLAN_PRESENT, 4)
    p.jump_if(R1, "!=", 0, "pass")
    p.load(R9, R6, SKB_LEN, 4)                                # r9 = frame length
    p.jump_if(R9, "<", HDR, "pass")
    p.mov(R1, R6, reg=True)
    p.mov(R2, 0)
    p.mov(R3, FP, reg=True)
    p.alu(R3, "+", BUF)
    p.mov(R4, HDR)
    p.call(SKB_LOAD_BYTES)
    p.jump_if(R0, "!=", 0, "pass")
    # what the fast path can take
    p.load(R1, FP, BUF + 12, 2)
    p.jump_if(R1, "!=", 0x0008, "pass")                       # etherType 0x0800, big-endian
    p.load(R1, FP, BUF + 14, 1)
    p.jump_if(R1, "!=", 0x45, "pass")                         # IPv4, no options
    p.load(R1, FP, BUF + 20, 1)
    p.alu(R1, "&", 0x3F)
    p.jump_if(R1, "!=", 0, "pass")                            # MF or fragment offset
    p.load(R1, FP, BUF + 21, 1)
    p.jump_if(R1, "!=", 0, "pass")
    p.load(R1, FP, BUF + 22, 1)
    p.jump_if(R1, "<", 2, "pass")                             # TTL <= 1: the user path drops
    p.load(R1, FP, BUF + 16, 1)                               # total length + 14 == frame
    p.alu(R1, "<<", 8)
    p.load(R2, FP, BUF + 17, 1)
    p.alu(R1, "|", R2, reg=True)
    p.alu(R1, "+", 14)
    p.jump_if(R1, "!=", R9, "pass", reg_value=True)
    # header checksum must verify (the program recomputes it; incremental updates keep a valid one)
    p.mov(R1, 0)
    for i in range(10):
        p.load(R2, FP, BUF + 14 + 2 * i, 2)
        p.alu(R1, "+", R2, reg=True)
    _fold(p, R1)
    p.jump_if(R1, "!=", 0xFFFF, "pass")
    # the flow, of the current generation
    p.load_map_fd(R1, flows_fd)
    p.mov(R2, FP, reg=True)
    p.alu(R2, "+", BUF + 26)
    p.call(MAP_LOOKUP_ELEM)
    p.jump_if(R0, "==", 0, "pass")
    p.mov(R7, R0, reg=True)                                   # r7 = flow entry
    _lookup(p, gen_fd, 0, "pass")
    p.load(R1, R0, 0, 8)
    p.load(R2, R7, V_GEN, 8)
    p.jump_if(R1, "!=", R2, "pass", reg_value=True)
    # ... and of the current generation of the ecmp_nhop entry it looked up
    p.load(R1, R7, V_DEP, 2)
    p.jump_if(R1, "==", NO_SLOT, "pass")
    _lookup(p, slot_gens_fd, None, "pass")
    p.load(R1, R0, 0, 4)
    p.load(R2, R7, V_DEP_GEN, 4)
    p.jump_if(R1, "!=", R2, "pass", reg_value=True)
    _verify_tcp_checksum(p)
    # direct counter: segments and their frame bytes
    p.load(R1, R7, V_SLOT, 2)
    p.jump_if(R1, "==", NO_SLOT, "rewrite")
    _lookup(p, counters_fd, None, "rewrite")
    p.mov(R8, R0, reg=True)                                   # r8 = counter
    p.mov(R4, 1)                                              # r4 = segments
    p.mov(R5, R9, reg=True)                                   # r5 = bytes
    p.load(R2, R6, SKB_GSO_SIZE, 4)
    p.jump_if(R2, "==", 0, "count")
    p.load(R1, FP, BUF + 23, 1)
    p.mov(R3, 42)                                             # UDP: headers up to 42
    p.jump_if(R1, "==", 17, "segments")
    p.jump_if(R1, "!=", 6, "count")
    p.load(R3, FP, BUF + 46, 1)                               # TCP: 34 + data offset * 4
    p.alu(R3, ">>", 4)
    p.alu(R3, "<<", 2)
    p.alu(R3, "+", 34)
    p.label("segments")                                       # r3 = header bytes per segment
    p.mov(R1, R9, reg=True)
    p.alu(R1, "-", R3, reg=True)                              # r1 = payload
    p.jump_if(R1, "<=", R2, "count", reg_value=True)
    p.mov(R4, R1, reg=True)
    p.alu(R4, "+", R2, reg=True)
    p.alu(R4, "-", 1)
    p.alu(R4, "/", R2, reg=True)                              # ceil(payload / gso_size)
    p.mov(R5, R4, reg=True)
    p.alu(R5, "*", R3, reg=True)
    p.alu(R5, "+", R1, reg=True)                              # payload + segments * headers
    p.label("count")
    p.load(R1, R8, 0, 8)
    p.alu(R1, "+", R4, reg=True)
    p.store(R8, 0, R1, 8)
    p.load(R1, R8, 8, 8)
    p.alu(R1, "+", R5, reg=True)
    p.store(R8, 8, R1, 8)
    # rewrites, each with its checksum updates
    p.label("rewrite")
    p.load(R8, R7, V_FLAGS, 1)                                # r8 = flags
    p.mov(R1, R8, reg=True)
    p.alu(R1, "&", F_TTL_DEC)
    p.jump_if(R1, "==", 0, "src")
    p.load(R3, FP, BUF + 22, 2)                               # TTL and protocol, as stored
    p.mov(R4, R3, reg=True)
    p.alu(R4, "-", 1)                                         # TTL is the low byte; >= 2 here
    p.store(FP, BUF + 22, R4, 1)
    p.mov(R1, R6, reg=True)
    p.mov(R2, 24)
    p.mov(R5, 2)
    p.call(L3_CSUM_REPLACE)
    p.jump_if(R0, "!=", 0, "fail")
    _store(p, 22, FP, BUF + 22, 1)
    for flag, off, voff, name in ((F_SRC, 26, V_SRC, "src"), (F_DST, 30, V_DST, "dst")):
        p.label(name)
        p.mov(R1, R8, reg=True)
        p.alu(R1, "&", flag)
        p.jump_if(R1, "==", 0, "dst" if name == "src" else "macs")
        p.load(R3, FP, BUF + off, 4)
        p.load(R4, R7, voff, 4)
        p.mov(R1, R6, reg=True)
        p.mov(R2, 24)
        p.mov(R5, 4)
        p.call(L3_CSUM_REPLACE)
        p.jump_if(R0, "!=", 0, "fail")
        p.mov(R1, R8, reg=True)
        p.alu(R1, "&", F_TCP)
        p.jump_if(R1, "==", 0, f"{name}_store")
        p.load(R3, FP, BUF + off, 4)
        p.load(R4, R7, voff, 4)
        p.mov(R1, R6, reg=True)
        p.mov(R2, 50)
        p.mov(R5, F_PSEUDO_HDR | 4)
        p.call(L4_CSUM_REPLACE)
        p.jump_if(R0, "!=", 0, "fail")
        p.label(f"{name}_store")
        _store(p, off, R7, voff, 4)
    p.label("macs")
    _store(p, 0, R7, V_MACS, 12)
    _count_port(p, ports_fd, port, 0)                         # rx here
    p.load(R1, R7, V_EGRESS, 2)
    _count_port(p, ports_fd, None, 8)                         # tx at the egress port
    p.load(R1, R7, V_IFINDEX, 4)
    p.mov(R2, 0)
    p.call(REDIRECT)
    p.exit()
    p.label("not_ipv4")                                       # the program drops it
    _count_port(p, ports_fd, port, 0)
    _count_port(p, ports_fd, port, 16)
    p.label("pass")
    p.ret(TC_ACT_OK)
    p.label("fail")                                           # a helper failed mid-rewrite
    _count_port(p, ports_fd, port, 16)
    p.ret(TC_ACT_SHOT)
    return p.link()


def _verify_tcp_checksum(p: Program) -> None:
    """Go on to "verified" only if the TCP checksum field is what the program's recomputation
    keeps consistent under incremental updates: a CHECKSUM_PARTIAL pseudo-header sum (every GSO
    frame, and any frame whose field equals the folded pseudo-header sum) or a full checksum
    that verifies. Anything else (a corrupt checksum, which the program would overwrite with a
    correct one) passes to user space, which recomputes it as BMv2 does.

    Sums are of 16-bit words as loaded little-endian: a one's-complement sum is the same in
    either byte order, swapped, and 0xFFFF and the comparisons are symmetric."""
    p.load(R1, FP, BUF + 23, 1)
    p.jump_if(R1, "!=", 6, "verified")
    p.load(R1, R6, SKB_GSO_SIZE, 4)
    p.jump_if(R1, "!=", 0, "verified")
    p.mov(R2, 0x0600)                                         # protocol 6, as loaded
    for off in (26, 28, 30, 32):
        p.load(R1, FP, BUF + off, 2)
        p.alu(R2, "+", R1, reg=True)
    p.mov(R3, R9, reg=True)
    p.alu(R3, "-", 34)                                        # TCP length (< 65536 here)
    p.mov(R4, R3, reg=True)
    p.alu(R4, "&", 0xFF)
    p.alu(R4, "<<", 8)
    p.alu(R3, ">>", 8)
    p.alu(R3, "|", R4, reg=True)                              # byte-swapped, as loaded
    p.alu(R2, "+", R3, reg=True)
    _fold(p, R2)
    p.load(R1, FP, BUF + 50, 2)
    p.jump_if(R1, "==", R2, "verified", reg_value=True)       # a partial (pseudo-header) sum
    p.store(FP, PSEUDO, R2, 8)
    p.jump_if(R9, ">", 34 + SEG_CHUNKS * CHUNK + CHUNK - 1, "pass")
    p.mov(R8, 0)                                              # r8 = running 32-bit sum
    for i in range(SEG_CHUNKS):
        p.mov(R1, R9, reg=True)
        p.alu(R1, "-", 34)
        p.alu(R1, ">>", 8)
        p.jump_if(R1, "<=", i, "seg_tail")
        p.mov(R1, R6, reg=True)
        p.mov(R2, 34 + CHUNK * i)
        p.mov(R3, FP, reg=True)
        p.alu(R3, "+", SEG)
        p.mov(R4, CHUNK)
        p.call(SKB_LOAD_BYTES)
        p.jump_if(R0, "!=", 0, "pass")
        _csum_diff(p, CHUNK)
    p.label("seg_tail")
    for off in range(0, CHUNK + 8, 8):
        p.store_imm(FP, SEG + off, 0, 8)
    p.mov(R4, R9, reg=True)
    p.alu(R4, "-", 34)
    p.alu(R4, "&", CHUNK - 1)                                 # r4 = tail bytes, 1..255 below
    p.jump_if(R4, "==", 0, "seg_sum")
    p.mov(R2, R9, reg=True)
    p.alu(R2, "-", 34)
    p.alu(R2, ">>", 8)
    p.alu(R2, "<<", 8)
    p.alu(R2, "+", 34)
    p.mov(R1, R6, reg=True)
    p.mov(R3, FP, reg=True)
    p.alu(R3, "+", SEG)
    p.call(SKB_LOAD_BYTES)
    p.jump_if(R0, "!=", 0, "pass")
    p.mov(R4, R9, reg=True)
    p.alu(R4, "-", 34)
    p.alu(R4, "&", CHUNK - 1)
    p.alu(R4, "+", 3)
    p.alu(R4, "&", 0x1FC)                                     # rounded up to whole 32-bit words
    _csum_diff(p, None)
    p.label("seg_sum")
    p.mov(R1, R8, reg=True)
    _fold(p, R1)
    p.load(R2, FP, PSEUDO, 8)
    p.alu(R1, "+", R2, reg=True)
    _fold(p, R1)
    p.jump_if(R1, "!=", 0xFFFF, "pass")
    p.label("verified")


def _csum_diff(p: Program, size: int | None) -> None:
    """r8 = bpf_csum_diff(NULL, 0, stack SEG, size (None: r4 as set), r8); failure passes."""
    p.mov(R1, 0)
    p.mov(R2, 0)
    p.mov(R3, FP, reg=True)
    p.alu(R3, "+", SEG)
    if size is not None:
        p.mov(R4, size)
    p.mov(R5, R8, reg=True)
    p.call(CSUM_DIFF)
    p.jump_if(R0, "s<", 0, "pass")
    p.mov(R8, R0, reg=True)


def _fold(p: Program, reg: int) -> None:
    """Fold `reg` (a sum of 16-bit words below 2**32) to 16 bits with end-around carry."""
    tmp = R3 if reg != R3 else R4
    for _ in range(2):
        p.mov(tmp, reg, reg=True)
        p.alu(tmp, ">>", 16)
        p.alu(reg, "&", 0xFFFF)
        p.alu(reg, "+", tmp, reg=True)


def _store(p: Program, off: int, base: int, src_off: int, size: int) -> None:
    """bpf_skb_store_bytes(skb, off, base + src_off, size, 0); on failure the half-rewritten
    frame is dropped (see "fail")."""
    p.mov(R1, R6, reg=True)
    p.mov(R2, off)
    p.mov(R3, base, reg=True)
    p.alu(R3, "+", src_off)
    p.mov(R4, size)
    p.mov(R5, 0)
    p.call(SKB_STORE_BYTES)
    p.jump_if(R0, "!=", 0, "fail")


def _lookup(p: Program, map_fd: int, key: int | None, miss: str) -> None:
    """r0 = the value at u32 `key` (None: the key in r1) of an array map; a miss goes to `miss`."""
    if key is None:
        p.store(FP, SCRATCH, R1, 4)
    else:
        p.store_imm(FP, SCRATCH, key, 4)
    p.load_map_fd(R1, map_fd)
    p.mov(R2, FP, reg=True)
    p.alu(R2, "+", SCRATCH)
    p.call(MAP_LOOKUP_ELEM)
    p.jump_if(R0, "==", 0, miss)


def _count_port(p: Program, ports_fd: int, port: int | None, field: int) -> None:
    """Add one to a per-port counter: `port`'s, or (None) the one whose number is in r1."""
    done = f"port_counted_{len(p)}"
    _lookup(p, ports_fd, port, done)
    p.load(R1, R0, field, 8)
    p.alu(R1, "+", 1)
    p.store(R0, field, R1, 8)
    p.label(done)
