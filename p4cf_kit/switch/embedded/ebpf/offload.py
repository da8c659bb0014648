"""Keeping the kernel fast path in step with the pipeline: maps, programs, links, learning.

`KernelOffload` is a fast table in the pipeline's sense (`invalidate`, `take_counts`), like the
C flow table. The user-space data plane teaches it the decision for every flow it handles
(`learn`); from then on the flow's frames never leave the kernel. A table write bumps a
generation before it changes anything, so the entries it may change stop matching at once and
the next frame of each such flow comes back to user space (which learns it again under the new
tables): a write takes effect on the next packet, and costs one map update.

Which entries: every flow depends on the ecmp_nhop key its decision looked up (hit or miss), so
a write to ecmp_nhop[s] alone (`invalidate_select`: a backend's next hop, as in a migration)
bumps slot s's generation in `slot_gens`, and flows to other backends stay in the kernel. Any
other write bumps the global epoch in `gen`. A decision made before a write is never learnt
after it: `learn` and the bumps share a lock, and `learn` refuses a decision whose pipeline
generation is not the latest one it was told.

Counters: the program adds to per-CPU slots, one per `ecmp_nhop` entry, which are never reset;
`take_counts` hands the pipeline what each slot gained since it last looked. A frame that
passed the generation check just before a write may be counted a few microseconds after the
write's `take_counts` and is then credited at the next read, to the entry then at that slot.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import struct
import threading
from dataclasses import dataclass, field

from p4cf_kit.errors import OffloadUnavailable
from p4cf_kit.netns import call_in_netns
from p4cf_kit.switch.embedded import packet as pk
from p4cf_kit.switch.embedded.ebpf import program as prog
from p4cf_kit.switch.embedded.ebpf import syscall as bpf
from p4cf_kit.switch.embedded.ebpf import tc_attach as tc
from p4cf_kit.switch.embedded.pipeline import Decision

FLOW_ENTRIES = 1 << 16   # LRU: the least recently used flows make room (they come back via user space)
COUNTER_SLOTS = 1 << 14  # ecmp_select is 14 bits
_U32 = struct.Struct("<I")
_GEN = struct.Struct("<Q")
ATTACH_MODES = ("auto", "tcx", "tc")  # auto: tcx where the kernel has it (>= 6.6), else tc
NO_TCX = (errno.EINVAL, errno.EOPNOTSUPP, 524)  # 524: ENOTSUPP, an unknown attach type


@dataclass
class _Attached:
    number: int
    ifindex: int
    prog_fd: int
    link_fd: int | None            # tcx; None: a cls_bpf filter
    created_clsact: bool = False   # cls_bpf: the qdisc is ours to remove


@dataclass
class KernelOffload:
    """The eBPF fast path of one data plane: `ports` maps P4 port numbers to interface names in
    namespace `netns`."""

    ports: dict[int, str]
    netns: str | None = None
    attach: str = field(default_factory=lambda: os.environ.get("P4CF_OFFLOAD_ATTACH", "auto"))
    attach_kind: str = ""  # what was used: "tcx" or "tc" (cls_bpf)
    _netlink: tc.Rtnetlink | None = None
    _maps: dict[str, int] = field(default_factory=dict)
    _attached: list[_Attached] = field(default_factory=list)
    _ifindex: dict[int, int] = field(default_factory=dict)
    _slots: set[int] = field(default_factory=set)
    _seen: dict[int, tuple[int, int]] = field(default_factory=dict)
    _stats_lock: threading.Lock = field(default_factory=threading.Lock)  # stats() may come from any thread
    _lock: threading.Lock = field(default_factory=threading.Lock)  # learn vs. the generation bumps
    _pipeline_gen: int = -1      # the pipeline generation of the latest write we were told of
    _epoch: int = 0              # the value in the `gen` map
    _slot_gen: dict[int, int] = field(default_factory=dict)  # mirror of `slot_gens` (0 unless set)

    def start(self) -> KernelOffload:
        """Create the maps, load one program per port and attach it; OffloadUnavailable (with
        everything undone) when the kernel or our privileges do not allow it."""
        try:
            self._start()
        except bpf.BpfError as exc:
            self.close()
            hint = {errno.EPERM: "needs root (CAP_BPF and CAP_NET_ADMIN)",
                    errno.EINVAL: "P4CF_OFFLOAD_ATTACH=tcx needs Linux >= 6.6",
                    errno.ENOSYS: "the kernel has no bpf(2)"}.get(exc.errno or 0, "")
            raise OffloadUnavailable(f"{exc.strerror or exc}{': ' + hint if hint else ''}") from exc
        except OSError as exc:  # rtnetlink refused the cls_bpf filter
            self.close()
            raise OffloadUnavailable(str(exc)) from exc
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        if self.attach not in ATTACH_MODES:
            raise OffloadUnavailable(f"P4CF_OFFLOAD_ATTACH={self.attach!r}: use one of {', '.join(ATTACH_MODES)}")
        ncpu = bpf.possible_cpus()
        self._maps = {}
        for name, kind, key, value, entries in (
                ("flows", bpf.MAP_LRU_HASH, prog.FLOW_KEY_LEN, prog.FLOW_VALUE.size, FLOW_ENTRIES),
                ("gen", bpf.MAP_ARRAY, 4, 8, 1),
                ("counters", bpf.MAP_PERCPU_ARRAY, 4, prog.COUNTER_VALUE.size, COUNTER_SLOTS),
                ("ports", bpf.MAP_PERCPU_ARRAY, 4, prog.PORT_VALUE.size, prog.MAX_PORTS),
                ("slot_gens", bpf.MAP_ARRAY, 4, 4, COUNTER_SLOTS)):
            self._maps[name] = bpf.map_create(kind, key, value, entries, f"p4cf_{name}")
        self._flows = bpf.MapOps(self._maps["flows"], prog.FLOW_KEY_LEN, prog.FLOW_VALUE.size)
        self._gen = bpf.MapOps(self._maps["gen"], 4, 8)
        self._counters = bpf.MapOps(self._maps["counters"], 4, prog.COUNTER_VALUE.size * ncpu)
        self._port_stats = bpf.MapOps(self._maps["ports"], 4, prog.PORT_VALUE.size * ncpu)
        self._slot_gens = bpf.MapOps(self._maps["slot_gens"], 4, 4)
        self._ncpu = ncpu
        for number, ifname in self.ports.items():
            if not 0 <= number < prog.MAX_PORTS:
                raise OffloadUnavailable(f"port {number} is out of the fast path's range")
            self._ifindex[number] = call_in_netns(self.netns, functools.partial(socket.if_nametoindex, ifname))
        for number, ifindex in self._ifindex.items():
            code = prog.build(number, self._maps["flows"], self._maps["gen"],
                              self._maps["counters"], self._maps["ports"], self._maps["slot_gens"])
            name = f"p4cf_lb_p{number}"
            prog_fd = bpf.prog_load(bpf.PROG_SCHED_CLS, code, name)
            try:
                self._attached.append(self._attach(number, ifindex, prog_fd, name))
            except BaseException:
                os.close(prog_fd)
                raise

    def _attach(self, number: int, ifindex: int, prog_fd: int, name: str) -> _Attached:
        """Attach one port's program: a tcx link, else (older kernels) the kit's cls_bpf filter.
        A kit filter a killed switch left on the port goes first either way: it would forward
        with its own stale maps."""
        if self._netlink is None:
            self._netlink = call_in_netns(self.netns, tc.Rtnetlink)
        tc.detach_filter(self._netlink, ifindex)
        if self.attach != "tc":
            try:
                link_fd = call_in_netns(self.netns, lambda: bpf.link_tcx_ingress(prog_fd, ifindex))
                self.attach_kind = "tcx"
                return _Attached(number, ifindex, prog_fd, link_fd)
            except bpf.BpfError as exc:
                if self.attach == "tcx" or exc.errno not in NO_TCX:
                    raise
        created = tc.attach_filter(self._netlink, ifindex, prog_fd, name)
        self.attach_kind = "tc"
        return _Attached(number, ifindex, prog_fd, None, created)

    def close(self) -> None:
        """Detach the programs (closing their links) and free the maps; safe to call twice."""
        for a in self._attached:
            if a.link_fd is None and self._netlink is not None:
                tc.detach_filter(self._netlink, a.ifindex)
                if a.created_clsact:
                    tc.remove_clsact(self._netlink, a.ifindex)
            for fd in (a.link_fd, a.prog_fd):
                if fd is None:
                    continue
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._attached = []
        if self._netlink is not None:
            self._netlink.close()
            self._netlink = None
        for fd in self._maps.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._maps = {}

    # ---- learning ------------------------------------------------------------------------
    def learn(self, frame: bytes | bytearray | memoryview, decision: Decision, generation: int) -> bool:
        """Teach the kernel `decision` for `frame`'s flow (before the frame is rewritten); False
        when the program would not take such frames (they keep going through user space)."""
        egress = decision.egress
        if (egress is None or decision.mac12 is None or len(frame) < prog.HDR
                or frame[12] != 0x08 or frame[13] != 0x00 or frame[14] != 0x45
                or frame[20] & 0x3F or frame[21] or frame[22] < 2
                or ((frame[16] << 8) | frame[17]) + pk.ETH_LEN != len(frame)):
            return False
        ifindex = self._ifindex.get(egress)
        if ifindex is None:
            return False
        src, dst = bytes(frame[26:30]), bytes(frame[30:34])
        flags = ((prog.F_TTL_DEC if decision.ttl_dec else 0)
                 | (prog.F_SRC if decision.addrs[:4] != src else 0)
                 | (prog.F_DST if decision.addrs[4:] != dst else 0)
                 | (prog.F_TCP if decision.tcp else 0))
        slot = decision.select if decision.select >= 0 else prog.NO_SLOT  # set with its counter
        dep = decision.lookup
        if not 0 <= dep < COUNTER_SLOTS:
            return False
        key = bytes(frame[26:38])
        with self._lock:
            if generation != self._pipeline_gen:
                return False  # decided before a write the kernel has already been told of
            if slot != prog.NO_SLOT:
                self._slots.add(slot)
            value = prog.flow_value(self._epoch, ifindex, slot, egress, flags, decision.mac12,
                                    decision.addrs[:4], decision.addrs[4:], dep, self._slot_gen.get(dep, 0))
            self._flows.update(key, value)
        return True

    # ---- the pipeline's fast-table interface --------------------------------------------
    def invalidate(self, generation: int) -> list[tuple[int, int, int]]:
        """Make every entry learnt before now stale, then hand over the counts so far."""
        with self._lock:
            self._epoch += 1
            self._gen.update(_U32.pack(0), _GEN.pack(self._epoch))
            self._pipeline_gen = generation
        return self.take_counts()

    def invalidate_select(self, select: int, generation: int) -> list[tuple[int, int, int]]:
        """Make stale only the entries whose decision looked up ecmp_nhop[`select`]."""
        with self._lock:
            bumped = (self._slot_gen.get(select, 0) + 1) & 0xFFFFFFFF
            self._slot_gens.update(_U32.pack(select), _U32.pack(bumped))
            self._slot_gen[select] = bumped
            self._pipeline_gen = generation
        return self.take_counts()

    def take_counts(self) -> list[tuple[int, int, int]]:
        """(select, packets, bytes) gained by each counter slot since the last call."""
        out = []
        for slot in self._slots:
            raw = self._counters.lookup(_U32.pack(slot))
            if raw is None:
                continue
            packets, nbytes = self._per_cpu_sum(raw, prog.COUNTER_VALUE)
            seen = self._seen.get(slot, (0, 0))
            if (packets, nbytes) != seen:
                out.append((slot, packets - seen[0], nbytes - seen[1]))
                self._seen[slot] = (packets, nbytes)
        return out

    def port_stats(self) -> dict[int, tuple[int, int, int]]:
        """Frames the kernel path handled per port: (received, sent, dropped)."""
        out = {}
        for number in self._ifindex:
            with self._stats_lock:
                raw = self._port_stats.lookup(_U32.pack(number))
            if raw is not None:
                rx, tx, dropped = self._per_cpu_sum(raw, prog.PORT_VALUE)
                out[number] = (rx, tx, dropped)
        return out

    def _per_cpu_sum(self, raw: bytes, layout: struct.Struct) -> tuple[int, ...]:
        """A per-CPU map value (one `layout` per possible CPU) summed field by field."""
        per_cpu = [layout.unpack_from(raw, i * layout.size) for i in range(self._ncpu)]
        return tuple(sum(fields) for fields in zip(*per_cpu))
