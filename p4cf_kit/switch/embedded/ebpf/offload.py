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
import os
import shutil
import socket
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType

from p4cf_kit.errors import OffloadUnavailable
from p4cf_kit.netns import call_in_netns
from p4cf_kit.switch.embedded import packet as pk
from p4cf_kit.switch.embedded.ebpf import cls_bpf
from p4cf_kit.switch.embedded.pipeline import Decision

PROGRAM = Path(__file__).with_name("forward.bpf.o")  # built from forward.bpf.c at set-up
ATTACH_MODES = ("auto", "tcx", "tc")  # auto: tcx where the kernel has it (>= 6.6), else tc
NO_TCX = (errno.EINVAL, errno.EOPNOTSUPP, 524)  # 524: ENOTSUPP, an unknown attach type
BUILD_FIX = ("install clang and libbpf-dev (apt-get install clang libbpf-dev, which "
             "scripts/setup-system.sh does) and run bash scripts/setup-python.sh again")

# The action flags of layout.h (P4CF_F_*): what a flow entry rewrites.
F_TTL_DEC, F_SRC, F_DST, F_TCP = 1, 2, 4, 8
KERNEL_FLOWS = 1 << 16  # P4CF_KERNEL_FLOWS: the LRU flow map's size


def missing_build_tools() -> list[str]:
    """The Debian packages set-up needs to build the kernel fast path that are not here."""
    missing = [] if shutil.which("clang") else ["clang"]
    if not Path("/usr/include/bpf/libbpf.h").is_file():
        missing.append("libbpf-dev")
    return missing


try:  # built at set-up from _loader.c (typed by _loader.pyi)
    from p4cf_kit.switch.embedded.ebpf import _loader
    LOADER_ERROR = ""
except ImportError as exc:  # set-up had no compiler or no libbpf-dev
    LOADER_ERROR = str(exc)


def loader() -> ModuleType:
    """The libbpf loader extension (`_loader.c`); OffloadUnavailable naming what is missing and
    the fix when the kernel fast path was not built here."""
    missing = missing_build_tools()
    why = f" ({' and '.join(missing)} missing)" if missing else ""
    if LOADER_ERROR:
        raise OffloadUnavailable(f"its libbpf loader is not built{why or f' ({LOADER_ERROR})'}: {BUILD_FIX}")
    if not PROGRAM.is_file():
        raise OffloadUnavailable(f"its eBPF program {PROGRAM.name} is not built{why}: {BUILD_FIX}")
    return _loader


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
    _flows: int = -1             # the maps' fds (also in _maps, by name)
    _gen: int = -1
    _counters: int = -1
    _port_stats: int = -1
    _slot_gens: int = -1

    def start(self) -> KernelOffload:
        """Load one program per port, sharing one set of maps, and attach it; OffloadUnavailable
        (with everything undone) when the kernel, our privileges or the build do not allow it."""
        try:
            self._start()
        except OSError as exc:
            self.close()
            hint = {errno.EPERM: "needs root (CAP_BPF and CAP_NET_ADMIN)",
                    errno.ENOSYS: "the kernel has no bpf(2)"}.get(exc.errno or 0, "")
            raise OffloadUnavailable(f"{exc.strerror or exc}{': ' + hint if hint else ''}") from exc
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        if self.attach not in ATTACH_MODES:
            raise OffloadUnavailable(f"P4CF_OFFLOAD_ATTACH={self.attach!r}: use one of {', '.join(ATTACH_MODES)}")
        loader()  # OffloadUnavailable when not built
        for number, ifname in self.ports.items():
            if not 0 <= number < pk.PORT_SLOTS:
                raise OffloadUnavailable(f"port {number} is out of the fast path's range")
            self._ifindex[number] = call_in_netns(self.netns, partial(socket.if_nametoindex, ifname))
        for number, ifindex in self._ifindex.items():
            prog_fd, maps = _loader.load(str(PROGRAM), {"p4_port": number}, self._maps)
            for fd in maps.values() if self._maps else ():
                os.close(fd)  # the shared ones, handed back again
            self._maps = self._maps or maps
            try:
                self._attached.append(self._attach(number, ifindex, prog_fd, f"p4cf_lb_p{number}"))
            except BaseException:
                os.close(prog_fd)
                raise
        self._flows = self._maps["p4cf_flows"]
        self._gen = self._maps["p4cf_gen"]
        self._counters = self._maps["p4cf_counters"]
        self._port_stats = self._maps["p4cf_ports"]
        self._slot_gens = self._maps["p4cf_slot_gens"]

    def _attach(self, number: int, ifindex: int, prog_fd: int, name: str) -> _Attached:
        """Attach one port's program: a tcx link, else (older kernels) the kit's cls_bpf filter.
        A kit filter a killed switch left on the port goes first either way: it would forward
        with its own stale maps."""
        call_in_netns(self.netns, lambda: cls_bpf.remove_filter(ifindex))
        if self.attach != "tc":
            try:
                link_fd = call_in_netns(self.netns, lambda: _loader.tcx_attach(prog_fd, ifindex))
                self.attach_kind = "tcx"
                return _Attached(number, ifindex, prog_fd, link_fd)
            except OSError as exc:
                if exc.errno not in NO_TCX:
                    raise
                if self.attach == "tcx":  # EINVAL here is the attach type, not the verifier
                    raise OffloadUnavailable(f"P4CF_OFFLOAD_ATTACH=tcx needs Linux >= 6.6 "
                                             f"({exc.strerror})") from exc
        created = call_in_netns(self.netns, lambda: cls_bpf.add_filter(ifindex, prog_fd, name))
        self.attach_kind = "tc"
        return _Attached(number, ifindex, prog_fd, None, created)

    def close(self) -> None:
        """Detach the programs (closing their links) and free the maps; safe to call twice."""
        for a in self._attached:
            if a.link_fd is None:
                try:
                    call_in_netns(self.netns, partial(cls_bpf.remove_filter, a.ifindex))
                    if a.created_clsact:
                        call_in_netns(self.netns, partial(cls_bpf.remove_clsact, a.ifindex))
                except OSError:
                    pass  # the port is gone, and its filter with it
            for fd in (a.link_fd, a.prog_fd):
                if fd is None:
                    continue
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._attached = []
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
        if egress is None or decision.mac12 is None or not pk.kernel_can_take(frame):
            return False
        ifindex = self._ifindex.get(egress)
        if ifindex is None:
            return False
        src, dst = bytes(frame[pk.OFF_IP_SRC:pk.OFF_IP_DST]), bytes(frame[pk.OFF_IP_DST:pk.OFF_L4])
        flags = ((F_TTL_DEC if decision.ttl_dec else 0)
                 | (F_SRC if decision.addrs[:4] != src else 0)
                 | (F_DST if decision.addrs[4:] != dst else 0)
                 | (F_TCP if decision.tcp else 0))
        select = decision.select if decision.select >= 0 else pk.NO_SELECT  # set with its counter
        lookup = decision.lookup
        if not 0 <= lookup < pk.SELECT_SLOTS:
            return False
        with self._lock:
            if generation != self._pipeline_gen:
                return False  # decided before a write the kernel has already been told of
            if select != pk.NO_SELECT:
                self._slots.add(select)
            _loader.learn(self._flows, frame, self._epoch, ifindex, lookup,
                            self._slot_gen.get(lookup, 0), decision.mac12, decision.addrs,
                            egress, select, flags)
        return True

    # ---- the pipeline's fast-table interface --------------------------------------------
    def invalidate(self, generation: int) -> list[tuple[int, int, int]]:
        """Make every entry learnt before now stale, then hand over the counts so far."""
        with self._lock:
            self._epoch += 1
            _loader.set_u64(self._gen, 0, self._epoch)
            self._pipeline_gen = generation
        return self.take_counts()

    def invalidate_select(self, select: int, generation: int) -> list[tuple[int, int, int]]:
        """Make stale only the entries whose decision looked up ecmp_nhop[`select`]."""
        with self._lock:
            bumped = (self._slot_gen.get(select, 0) + 1) & 0xFFFFFFFF
            _loader.set_u32(self._slot_gens, select, bumped)
            self._slot_gen[select] = bumped
            self._pipeline_gen = generation
        return self.take_counts()

    def take_counts(self) -> list[tuple[int, int, int]]:
        """(select, packets, bytes) gained by each counter slot since the last call."""
        out: list[tuple[int, int, int]] = []
        for slot in self._slots:
            sums = _loader.counter(self._counters, slot)
            if sums is None:
                continue
            packets, nbytes = sums
            seen = self._seen.get(slot, (0, 0))
            if (packets, nbytes) != seen:
                out.append((slot, packets - seen[0], nbytes - seen[1]))
                self._seen[slot] = (packets, nbytes)
        return out

    def port_stats(self) -> dict[int, tuple[int, int, int]]:
        """Frames the kernel path handled per port: (received, sent, dropped)."""
        out: dict[int, tuple[int, int, int]] = {}
        for number in self._ifindex:
            with self._stats_lock:
                sums = _loader.port_counts(self._port_stats, number)
            if sums is not None:
                rx, tx, dropped = sums
                out[number] = (rx, tx, dropped)
        return out
