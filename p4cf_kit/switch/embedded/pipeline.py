"""The load balancer program (p4/load_balance.p4) run on frames, as BMv2 simple_switch runs it.

`process(frame, ingress_port)` follows the v1model pipeline: parser, ingress, egress, checksum
update, deparser. Points where BMv2's behaviour is not obvious, checked against its source:

- Parser errors do not drop in v1model: a header the frame is too short for stays invalid and
  the packet goes on to ingress. A frame cut inside IPv4 therefore has no valid IPv4 header and
  is dropped by the `else drop()` branch; a frame cut inside TCP is routed as plain IPv4 (hash
  without ports, no TCP checksum update), its bytes passed on untouched.
- `hash(..., crc16, base, {fields}, max)` becomes BMv2's modify_field_with_hash_based_offset:
  base + crc16(buf) % max, stored into bit<14> (truncated). BMv2 builds `buf` by concatenating
  the fields of *valid* headers only (BufBuilder skips invalid ones), so without TCP the input
  is srcAddr, dstAddr, protocol (9 bytes), not ports as zeros. max == 0 is treated as 1.
- `ecmp_nhop` runs only when `ecmp_group` ran a forwarding action (the program switches on
  `action_run`): `mark_to_drop` alone only sets egress_spec to 511 and a later `set_nhop` would
  override it, so a miss would otherwise reach the client's entry 0.
- The direct counter counts every hit of an `ecmp_nhop` entry (whatever its action, even if
  egress then drops); bytes are the frame length as received.
- IPv4 options (ihl > 5) are not parsed: the program's ipv4 header is the first 20 bytes, the
  options are payload. The header checksum is recomputed over those 20 bytes only and the
  options pass untouched, so such packets leave with a checksum that does not cover their
  options, exactly as from BMv2.
- The TCP checksum is csum16 over the pseudo-header (with tcpLength = totalLen - 20, 16-bit
  wrap), the TCP header without its checksum, and every byte after the TCP header to the end of
  the frame (BMv2 appends the whole remaining payload, Ethernet padding included).
- Egress port 511 drops; a port the switch does not have is returned as is (the data plane
  drops it, as BMv2 does when no interface is attached).

Decisions depend only on a few header fields, so they are cached per flow key; every table
write replaces the cache, so it takes effect on the next packet. The data plane's optional C
fast path learns the same decisions (`decision_for`) and applies them itself; every write bumps
a generation number that invalidates it too, and its counts are merged into `nhop_counter`.
One lock serialises writes, counter updates and packet processing (writes come from gRPC
threads); the fast path's own lock is only ever taken inside it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from p4cf_kit.switch.embedded import packet as pk
from p4cf_kit.switch.embedded.crc16 import crc16

DROP_PORT = 511
ECMP_SELECT_MASK = (1 << 14) - 1
FLOW_CACHE_MAX = 1 << 16

# Per table: action name -> {param name: bit width}.
ECMP_GROUP_ACTIONS = {
    "drop": {},
    "set_ecmp_select": {"ecmp_base": 16, "ecmp_count": 32},
    "set_rewrite_src": {"new_src": 32},
}
ECMP_NHOP_ACTIONS = {"drop": {}, "set_nhop": {"nhop_dmac": 48, "nhop_ipv4": 32, "port": 9}}
SEND_FRAME_ACTIONS = {"rewrite_mac": {"smac": 48}, "drop": {}}


@dataclass(frozen=True)
class Action:
    """An action with its parameter values, checked against the table's action list."""

    name: str
    params: dict[str, int]

    @staticmethod
    def checked(table: str, allowed: dict[str, dict[str, int]], name: str,
                params: dict[str, int]) -> Action:
        """Validate `name` and `params` (names and widths) for `table`; ValueError otherwise."""
        if name not in allowed:
            raise ValueError(f"{table}: action {name!r} is not one of {sorted(allowed)}")
        spec = allowed[name]
        if set(params) != set(spec):
            raise ValueError(f"{table}.{name}: parameters {sorted(params)} != {sorted(spec)}")
        for pname, width in spec.items():
            value = params[pname]
            if not 0 <= value < (1 << width):
                raise ValueError(f"{table}.{name}: {pname}={value} does not fit in {width} bits")
        return Action(name, dict(params))


class FastTable(Protocol):
    """What the pipeline needs from a fast path's flow table (dataplane's C FlowTable)."""

    def invalidate(self, generation: int) -> list[tuple[int, int, int]]: ...

    def take_counts(self) -> list[tuple[int, int, int]]: ...


@runtime_checkable
class SelectiveFastTable(FastTable, Protocol):
    """A flow table that can forget just the flows whose decision looked up ecmp_nhop[select]
    (a write that changes one backend's next hop, as in a migration); the kernel fast path's.
    Tables that cannot are sent `invalidate()`."""

    def invalidate_select(self, select: int, generation: int) -> list[tuple[int, int, int]]: ...


class NhopEntry:
    """An `ecmp_nhop` entry and its direct counter [packets, bytes]."""

    __slots__ = ("action", "counter")

    def __init__(self, action: Action) -> None:
        self.action = action
        self.counter = [0, 0]


class Decision:
    """What the program does to every packet of one flow key: the egress port (None: drop),
    the counter to bump, and the header values to write (with their checksum sums ready)."""

    __slots__ = ("egress", "counter", "select", "lookup", "dmac", "smac", "src", "dst", "ttl_dec",
                 "tcp", "mac12", "addrs", "pseudo_base")

    def __init__(self) -> None:
        self.egress: int | None = None
        self.counter: list[int] | None = None
        self.select = -1  # the ecmp_nhop entry `counter` belongs to (for the C fast path)
        self.lookup = -1  # the ecmp_nhop key looked up (hit or miss): what the decision depends on
        self.dmac: bytes | None = None
        self.smac: bytes | None = None
        self.src = b""
        self.dst = b""
        self.ttl_dec = False
        self.tcp = False
        self.mac12: bytes | None = None
        self.addrs = b""
        self.pseudo_base = 0

    def finish(self) -> Decision:
        """Precompute what every packet needs: MAC bytes, addresses, pseudo-header sum base."""
        if self.dmac is not None and self.smac is not None:
            self.mac12 = self.dmac + self.smac
        self.addrs = self.src + self.dst
        self.pseudo_base = int.from_bytes(self.addrs, "big") + pk.PROTO_TCP
        return self


_DROP_ALL = Decision()


def _flow_key(frame: bytes | bytearray | memoryview) -> bytes:
    """Every byte the program's decisions read (etherType, version/ihl, flags/fragOffset, ttl,
    protocol, addresses, ports) plus whether the frame is long enough to hold TCP."""
    return (bytes(frame[12:15]) + frame[20:24] + frame[26:38]
            + (b"\x01" if len(frame) >= pk.MIN_TCP_FRAME else b"\x00"))


class LoadBalancerPipeline:
    """The tables, counters and behaviour of p4/load_balance.p4 (API used by the P4Runtime
    server and the data plane)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[bytes, Decision] = {}
        self._generation = 1
        self._fast: list[FastTable] = []
        self._selective: dict[int, SelectiveFastTable] = {}   # id -> those of _fast that can narrow
        self.clear()

    # ---- control plane -------------------------------------------------------------------
    def clear(self) -> None:
        """Remove every entry; default actions back to the program's (drop everywhere)."""
        with self._lock:
            self._begin_write()
            self._group: dict[int, dict[int, Action]] = {}   # prefix_len -> {prefix: action}
            self._group_lens: list[int] = []                  # longest first
            self._group_default = Action("drop", {})
            self._nhop: dict[int, NhopEntry] = {}
            self._nhop_default = Action("drop", {})
            self._send: dict[int, Action] = {}
            self._send_default = Action("drop", {})

    def set_ecmp_group(self, prefix: int, prefix_len: int, action: str, params: dict[str, int]) -> None:
        """Insert or replace the LPM entry prefix/prefix_len (host bits are ignored)."""
        if not 0 <= prefix_len <= 32:
            raise ValueError(f"ecmp_group: prefix length {prefix_len} not in 0..32")
        act = Action.checked("ecmp_group", ECMP_GROUP_ACTIONS, action, params)
        with self._lock:
            self._begin_write()
            self._group.setdefault(prefix_len, {})[_mask(prefix, prefix_len)] = act
            self._group_lens = sorted(self._group, reverse=True)

    def del_ecmp_group(self, prefix: int, prefix_len: int) -> None:
        """Delete the LPM entry; KeyError if it does not exist."""
        with self._lock:
            self._begin_write()
            entries = self._group.get(prefix_len, {})
            del entries[_mask(prefix, prefix_len)]
            if not entries:
                self._group.pop(prefix_len, None)
            self._group_lens = sorted(self._group, reverse=True)

    def set_ecmp_group_default(self, action: str, params: dict[str, int]) -> None:
        """Change the default action of ecmp_group."""
        act = Action.checked("ecmp_group", ECMP_GROUP_ACTIONS, action, params)
        with self._lock:
            self._begin_write()
            self._group_default = act

    def set_ecmp_nhop(self, select: int, action: str, params: dict[str, int]) -> None:
        """Insert or modify entry `select`; a modify keeps the entry's counter."""
        _check_select(select)
        act = Action.checked("ecmp_nhop", ECMP_NHOP_ACTIONS, action, params)
        with self._lock:
            self._begin_write(select)
            entry = self._nhop.get(select)
            if entry is None:
                self._nhop[select] = NhopEntry(act)
            else:
                entry.action = act

    def del_ecmp_nhop(self, select: int) -> None:
        """Delete entry `select` and its counter; KeyError if it does not exist."""
        with self._lock:
            self._begin_write(select)
            del self._nhop[select]

    def set_ecmp_nhop_default(self, action: str, params: dict[str, int]) -> None:
        """Change the default action of ecmp_nhop (a miss is never counted)."""
        act = Action.checked("ecmp_nhop", ECMP_NHOP_ACTIONS, action, params)
        with self._lock:
            self._begin_write()
            self._nhop_default = act

    def set_send_frame(self, port: int, action: str, params: dict[str, int]) -> None:
        """Insert or replace the send_frame entry of egress `port`."""
        if not 0 <= port <= DROP_PORT:
            raise ValueError(f"send_frame: port {port} does not fit in 9 bits")
        act = Action.checked("send_frame", SEND_FRAME_ACTIONS, action, params)
        with self._lock:
            self._begin_write()
            self._send[port] = act

    def del_send_frame(self, port: int) -> None:
        """Delete the send_frame entry of `port`; KeyError if it does not exist."""
        with self._lock:
            self._begin_write()
            del self._send[port]

    def set_send_frame_default(self, action: str, params: dict[str, int]) -> None:
        """Change the default action of send_frame."""
        act = Action.checked("send_frame", SEND_FRAME_ACTIONS, action, params)
        with self._lock:
            self._begin_write()
            self._send_default = act

    def nhop_counter(self, select: int) -> tuple[int, int]:
        """(packets, bytes) of entry `select`; KeyError if it does not exist."""
        with self._lock:
            for table in self._fast:
                self._credit(table.take_counts())
            packets, nbytes = self._nhop[select].counter
            return packets, nbytes

    def set_nhop_counter(self, select: int, packets: int, bytes_: int) -> None:
        """Overwrite the counter of entry `select` (P4Runtime DirectCounterEntry write)."""
        with self._lock:
            for table in self._fast:
                self._credit(table.take_counts())
            self._nhop[select].counter[:] = [packets, bytes_]

    # ---- C fast path (dataplane.py) -----------------------------------------------------
    def attach_fastpath(self, table: FastTable) -> None:
        """Let `table` apply this pipeline's decisions; every write will invalidate it."""
        with self._lock:
            self._credit(table.invalidate(self._generation))
            self._fast.append(table)
            if isinstance(table, SelectiveFastTable):   # asked once: the check costs ~10 us
                self._selective[id(table)] = table

    def detach_fastpath(self, table: FastTable) -> None:
        """Stop invalidating `table`, keeping the counts it gathered."""
        with self._lock:
            if table in self._fast:
                self._fast.remove(table)
                self._selective.pop(id(table), None)
                self._credit(table.take_counts())

    def decision_for(self, frame: bytes | bytearray | memoryview) -> tuple[bytes, Decision, int]:
        """`frame`'s flow key, the decision for it and the generation it belongs to: what a
        fast path may learn (its table refuses it if a write has happened since)."""
        with self._lock:
            return _flow_key(frame), self._decision(frame), self._generation

    def _begin_write(self, select: int | None = None) -> None:
        """Start a table write (lock held): forget cached decisions here and in every attached
        fast path, taking their counts first so they land on the entries they belong to. A write
        to ecmp_nhop[`select`] alone lets a fast path that can tell forget only the flows whose
        decision looked that entry up."""
        self._cache = {}
        self._generation += 1
        for table in self._fast:
            selective = self._selective.get(id(table))
            if select is not None and selective is not None:
                self._credit(selective.invalidate_select(select, self._generation))
            else:
                self._credit(table.invalidate(self._generation))

    def _credit(self, counts: list[tuple[int, int, int]]) -> None:
        """Add a fast path's (select, packets, bytes) to the entries' counters (lock held)."""
        for select, packets, nbytes in counts:
            entry = self._nhop.get(select)
            if entry is not None:
                entry.counter[0] += packets
                entry.counter[1] += nbytes

    # ---- data plane ----------------------------------------------------------------------
    def process(self, frame: bytes, ingress_port: int) -> tuple[int, bytes] | None:
        """Run the program on one frame: (egress_port, frame out), or None when dropped."""
        out = self.process_frame(frame, ingress_port, len(frame), 1, csum_partial=False)
        return None if out is None else (out[0], bytes(out[1]))

    def process_frame(self, frame: bytes | bytearray | memoryview, ingress_port: int,
                      wire_bytes: int, packets: int,
                      csum_partial: bool) -> tuple[int, bytearray | memoryview] | None:
        """`process` for the data plane; a bytearray or writable memoryview is rewritten in
        place (the data plane hands over its receive buffer, saving a copy per frame).

        `packets`/`wire_bytes` are what the counters see: 1 and len(frame) for a plain frame,
        the segment count and the sum of segment lengths for a GSO super-frame. With
        `csum_partial` the TCP checksum field holds the kernel's pseudo-header sum
        (CHECKSUM_PARTIAL) and gets the new pseudo-header sum; the kernel completes it into the
        same value BMv2 computes. `ingress_port` is not read by the program.
        """
        with self._lock:
            decision = self._decision(frame)
            counter = decision.counter
            if counter is not None:
                counter[0] += packets
                counter[1] += wire_bytes
        if decision.egress is None:
            return None
        out = frame if isinstance(frame, (bytearray, memoryview)) else bytearray(frame)
        _rewrite(out, decision, csum_partial)
        return decision.egress, out

    def _decision(self, frame: bytes | bytearray | memoryview) -> Decision:
        """The cached decision for `frame`'s flow, computed on a miss (lock held)."""
        if len(frame) < pk.MIN_IPV4_FRAME:
            return _DROP_ALL
        key = _flow_key(frame)
        decision = self._cache.get(key)
        if decision is None:
            decision = self._decide(frame).finish()
            if len(self._cache) >= FLOW_CACHE_MAX:
                self._cache = {}
            self._cache[key] = decision
        return decision

    def _decide(self, frame: bytes | bytearray | memoryview) -> Decision:
        """Parser, ingress and egress control of the program for one flow (lock held)."""
        hdr = pk.parse(frame)
        d = Decision()
        if hdr is None:
            return d
        d.src, d.dst, d.tcp = hdr.src, hdr.dst, hdr.tcp_valid
        if hdr.ttl <= 1:
            return d
        egress_spec = 0
        ecmp_select = 0
        act = self._lookup_group(int.from_bytes(hdr.dst, "big"))
        if act.name == "drop":
            return d
        if act.name == "set_ecmp_select":
            data = hdr.src + hdr.dst + bytes((hdr.proto,)) + hdr.sport + hdr.dport
            count = act.params["ecmp_count"] or 1
            ecmp_select = (act.params["ecmp_base"] + crc16(data) % count) & ECMP_SELECT_MASK
        else:  # set_rewrite_src
            d.src = act.params["new_src"].to_bytes(4, "big")
        d.lookup = ecmp_select
        entry = self._nhop.get(ecmp_select)
        if entry is not None:
            d.counter = entry.counter
            d.select = ecmp_select
            act = entry.action
        else:
            act = self._nhop_default
        if act.name == "drop":
            egress_spec = DROP_PORT
        else:  # set_nhop
            d.dmac = act.params["nhop_dmac"].to_bytes(6, "big")
            d.dst = act.params["nhop_ipv4"].to_bytes(4, "big")
            egress_spec = act.params["port"]
            d.ttl_dec = True
        if egress_spec == DROP_PORT:
            return d
        send = self._send.get(egress_spec, self._send_default)
        if send.name == "drop":
            return d
        d.smac = send.params["smac"].to_bytes(6, "big")
        d.egress = egress_spec
        return d

    def _lookup_group(self, dst: int) -> Action:
        """Longest-prefix match of `dst` in ecmp_group."""
        for plen in self._group_lens:
            act = self._group[plen].get(_mask(dst, plen))
            if act is not None:
                return act
        return self._group_default


def _rewrite(out: bytearray | memoryview, d: Decision, csum_partial: bool) -> None:
    """Deparse in place with the decision's header values and the program's checksum updates.

    Sums are taken modulo 0xFFFF (see packet.py); a header with a non-zero TTL or a TCP
    pseudo-header is never all zeros, so a zero remainder always means a folded sum of 0xFFFF,
    whose checksum is 0 (as BMv2's csum16 gives)."""
    if d.mac12 is not None:
        out[0:12] = d.mac12
    elif d.dmac is not None:
        out[0:6] = d.dmac
    elif d.smac is not None:
        out[6:12] = d.smac
    if d.ttl_dec:
        out[22] -= 1
    out[24:34] = b"\x00\x00" + d.addrs
    v = int.from_bytes(out[14:34], "big") % 0xFFFF
    out[24:26] = (0xFFFF - v if v else 0).to_bytes(2, "big")
    if d.tcp:
        tcp_len = (((out[16] << 8) | out[17]) - pk.IPV4_LEN) & 0xFFFF
        if csum_partial:
            v = (d.pseudo_base + tcp_len) % 0xFFFF
            out[50:52] = (v or 0xFFFF).to_bytes(2, "big")
        else:
            out[50:52] = b"\x00\x00"
            value = int.from_bytes(out[pk.OFF_TCP:], "big")
            if len(out) & 1:
                value <<= 8
            v = (value + d.pseudo_base + tcp_len) % 0xFFFF
            out[50:52] = (0xFFFF - v if v else 0).to_bytes(2, "big")


def _mask(value: int, prefix_len: int) -> int:
    """`value` with the bits past `prefix_len` cleared."""
    return value & (((1 << prefix_len) - 1) << (32 - prefix_len)) if prefix_len else 0


def _check_select(select: int) -> None:
    if not 0 <= select <= ECMP_SELECT_MASK:
        raise ValueError(f"ecmp_nhop: select {select} does not fit in 14 bits")
