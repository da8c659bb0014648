"""The embedded switch's data plane: Linux interfaces as P4 ports, over AF_PACKET sockets.

One packet socket per port (ETH_P_ALL, bound to the interface) with PACKET_VNET_HDR, so every
frame comes with its virtio_net_hdr. That is how offloads stay correct without touching the
hosts: veth peers send CHECKSUM_PARTIAL packets and TSO/GSO super-frames of up to 64 KiB. Such
a frame is handled as the segments it stands for (they share every header field the program
reads): one decision, counters bumped by the number of segments and the sum of their frame
lengths, and it leaves with the same GSO/checksum request so the kernel cuts it and completes
the TCP checksum, giving the bytes BMv2 would emit for each segment. A partial checksum that is
not the TCP one of a parsed TCP header is completed in software before the program runs.

Receive paths (`rx_ring`):
- False (default): recv() per frame, woken by poll(): lowest latency.
- True: a TPACKET_V3 mmap ring: no system call per frame, but the kernel hands a block over only
  when it is full or its retire timer fires (>= 1 jiffy, 4 ms at HZ=250), which adds that much
  latency at low rates.
Outgoing packets are never seen (PACKET_IGNORE_OUTGOING, and PACKET_OUTGOING is skipped).

C fast path (`_fastpath.c`, built at install time when a compiler is there): frames are taken
and sent in batches (recvmmsg/sendmmsg) without the GIL, and a flow table applies the decisions
the Python pipeline made (rewrites, TTL, checksums, counters, egress). A frame whose flow is not
in the table (first packet, or any packet after a table write) comes back to Python, which
processes it as above and teaches the table the decision. It is used by default when the
extension imports, unless P4CF_FASTPATH=0 is set, `fastpath=False` is passed or pcap files are
written (those run in Python). With `rx_ring` the fast path reads a TPACKET_V2 ring (one slot
per frame, so no block retire timer) instead of calling recvmmsg.

Kernel fast path (`ebpf/`): where the kernel allows it (root; a tcx link on Linux >= 6.6, a
cls_bpf filter before) an eBPF program at each port's tc ingress forwards every flow the
pipeline has decided, so established connections never leave the kernel; user space sees a
flow's first frame after each table write, and the frames the program does not take. The port
sockets are then bound to ETH_P_IP, which the kernel serves after tc ingress, so no frame is
handled twice; non-IPv4 frames, which the program drops, are counted by the kernel program
instead. Used by default where it loads (`offload=None`), unless P4CF_OFFLOAD=0 is set,
`offload=False` is passed or pcap files are written; `offload=True` insists
(OffloadUnavailable says why it cannot).
"""

from __future__ import annotations

import functools
import mmap
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from p4cf_kit.errors import OffloadUnavailable
from p4cf_kit.netns import call_in_netns
from p4cf_kit.switch.embedded import packet as pk
from p4cf_kit.switch.embedded.ebpf.offload import KernelOffload
from p4cf_kit.switch.embedded.pcap import PortPcaps
from p4cf_kit.switch.embedded.pipeline import Decision, LoadBalancerPipeline

try:
    from p4cf_kit.switch.embedded import _fastpath
    FASTPATH_BUILT = True
except ImportError:  # not built (no compiler at install time): the Python path runs
    FASTPATH_BUILT = False

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_VERSION = 10
PACKET_VNET_HDR = 15
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23
TPACKET_V3 = 2
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32

VNET_HDR = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_LEN = VNET_HDR.size
F_NEEDS_CSUM = 1
GSO_NONE, GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_UDP_L4 = 0, 1, 3, 4, 5
GSO_ECN = 0x80
NO_VNET = bytes(VNET_LEN)
MAX_FRAME = 256 * 1024  # GSO super-frames are at most 64 KiB + headers; room for BIG TCP
BATCH = 256  # frames taken from one port before looking at the others

# TPACKET_V3 ring geometry: blocks large enough for a whole GSO frame.
RING_BLOCK_SIZE = 1 << 18
RING_BLOCK_NR = 32
RING_FRAME_SIZE = 1 << 11
RING_RETIRE_TOV_MS = 1
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
MIN_KEY_FRAME = 38  # the fast path keys flows on frame[12:38]; shorter frames stay in Python
_ZERO12 = bytes(12)
_ZERO8 = bytes(8)


def fastpath_available() -> bool:
    """The C fast path is built and not switched off with P4CF_FASTPATH=0."""
    return FASTPATH_BUILT and os.environ.get("P4CF_FASTPATH", "1") != "0"


def offload_wanted() -> bool:
    """The kernel fast path is not switched off with P4CF_OFFLOAD=0."""
    return os.environ.get("P4CF_OFFLOAD", "1") != "0"


def learn(table: _fastpath.FlowTable | None, offload: KernelOffload | None,
          pipeline: LoadBalancerPipeline, frame: bytes | bytearray | memoryview) -> bool:
    """Teach the fast paths the pipeline's decision for `frame`'s flow (before the frame is
    rewritten). Both refuse it if a table write happened meanwhile, and the kernel also when
    its program would not take such frames. Whether the C table (without one: the kernel)
    took it."""
    if len(frame) < MIN_KEY_FRAME:
        return False
    key, d, generation = pipeline.decision_for(frame)
    taken = offload.learn(frame, d, generation) if offload is not None else False
    if table is not None:
        taken = table.insert(key, generation, *_decision_args(d))
    return taken


def _decision_args(d: Decision) -> tuple[int, int, bytes, bytes, bool, bool]:
    """A Decision as FlowTable.insert takes it: egress (-1 drop), select (-1 no counter),
    the 12 MAC bytes, the 8 address bytes, TTL decrement, TCP parsed."""
    if d.egress is None:
        return -1, d.select, _ZERO12, d.addrs if len(d.addrs) == 8 else _ZERO8, d.ttl_dec, d.tcp
    assert d.mac12 is not None  # forwarding needs set_nhop and rewrite_mac: both MACs set
    return d.egress, d.select, d.mac12, d.addrs, d.ttl_dec, d.tcp


@dataclass
class PortStats:
    """Per-port frame counts (GSO super-frames count once here; see the pipeline counters)."""

    rx: int = 0
    tx: int = 0
    dropped: int = 0
    tx_errors: int = 0


@dataclass
class _Port:
    number: int
    ifname: str
    sock: socket.socket
    ring: mmap.mmap | None = None
    view: memoryview | None = None
    block: int = 0
    see_outgoing: bool = False  # the kernel lacks PACKET_IGNORE_OUTGOING: filter ourselves
    buf: bytearray = field(default_factory=lambda: bytearray(VNET_LEN + MAX_FRAME))
    stats: PortStats = field(default_factory=PortStats)


def gso_segments(frame: bytes | bytearray | memoryview, gso_type: int, gso_size: int, l4_off: int) -> tuple[int, int]:
    """(segments, sum of segment frame lengths) a GSO super-frame will become."""
    kind = gso_type & ~GSO_ECN
    if kind == GSO_NONE or gso_size == 0 or l4_off <= 0 or l4_off >= len(frame):
        return 1, len(frame)
    if kind in (GSO_TCPV4, GSO_TCPV6):
        if l4_off + 13 > len(frame):
            return 1, len(frame)
        hdr = l4_off + (frame[l4_off + 12] >> 4) * 4
    elif kind in (GSO_UDP_L4, GSO_UDP):
        hdr = l4_off + 8
    else:
        return 1, len(frame)
    payload = len(frame) - hdr
    if payload <= gso_size:
        return 1, len(frame)
    segs = -(-payload // gso_size)
    return segs, payload + segs * hdr


def prepare_offloads(vnet: bytes, frame: bytearray | memoryview) -> tuple[bytes, bool, int, int]:
    """What a received frame's virtio_net_hdr asks for, before the program runs: the header to
    send it with, whether its TCP checksum field holds a pseudo-header sum (CHECKSUM_PARTIAL),
    and the (segments, bytes) its counter sees. A partial checksum the program would not keep
    consistent is completed here, in place."""
    partial = False
    segs, nbytes = 1, len(frame)
    if vnet != NO_VNET:  # an offload to take care of
        flags, gso_type, _, gso_size, csum_start, csum_offset = VNET_HDR.unpack(vnet)
        if flags & F_NEEDS_CSUM:
            if csum_start == pk.OFF_TCP and csum_offset == 16:
                partial = True
            elif gso_type == GSO_NONE:
                complete_checksum(frame, csum_start, csum_offset)
                vnet = NO_VNET
            # other GSO frames keep their partial L4 checksum, which the program never touches
        elif gso_type == GSO_NONE:
            vnet = NO_VNET  # only DATA_VALID: checksums are recomputed, nothing to ask for
        if gso_type != GSO_NONE:
            segs, nbytes = gso_segments(frame, gso_type, gso_size, csum_start)
    return vnet, partial, segs, nbytes


def complete_checksum(frame: bytearray | memoryview, csum_start: int, csum_offset: int) -> None:
    """Do what the kernel does for CHECKSUM_PARTIAL: fold the sum from csum_start on (the
    field already holds the pseudo-header sum) and store its complement at the field."""
    where = csum_start + csum_offset
    if csum_start >= len(frame) or where + 2 > len(frame):
        return
    value = ~pk.ones_sum(memoryview(frame)[csum_start:]) & 0xFFFF
    frame[where:where + 2] = value.to_bytes(2, "big")


class Dataplane:
    """Forwards frames between interfaces through a LoadBalancerPipeline.

    `ports` maps P4 port numbers to interface names; `netns` names the namespace those
    interfaces live in (sockets are opened there; the caller stays where it is). `fastpath`:
    None uses the C fast path where it can (see the module doc), False never, True insists
    (RuntimeError at start when it cannot be used).
    """

    def __init__(self, pipeline: LoadBalancerPipeline, ports: dict[int, str],
                 pcap_dir: str | None = None, netns: str | None = None,
                 rx_ring: bool = False, fastpath: bool | None = None,
                 offload: bool | None = None) -> None:
        self.pipeline = pipeline
        self.port_names = dict(ports)
        self.pcap_dir = pcap_dir
        self.netns = netns
        self.rx_ring = rx_ring
        self.fastpath = fastpath
        self.offload = offload
        self.fast = False  # whether the running data plane uses the C fast path
        self.kernel: KernelOffload | None = None  # the running kernel fast path, if any
        self.offload_error = ""  # why the kernel fast path is not running (when it is not)
        self._table: _fastpath.FlowTable | None = None
        self._forwarder: _fastpath.Forwarder | None = None
        self._ports: dict[int, _Port] = {}
        self._pcaps: PortPcaps | None = None
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1
        self._stopping = False
        self.error: BaseException | None = None
        self.cpu_seconds = 0.0  # CPU time of the forwarding thread (capacity estimates)

    # ---- life cycle ----------------------------------------------------------------------
    def start(self) -> Dataplane:
        """Open the port sockets and start forwarding in a background thread."""
        if self._thread is not None:
            raise RuntimeError("data plane already started")
        try:
            fast = self._wants_fastpath()
            self._start_offload()
            proto = ETH_P_IP if self.kernel is not None else ETH_P_ALL
            for number, ifname in self.port_names.items():
                sock, ignores = call_in_netns(self.netns, functools.partial(_open_socket, ifname, proto))
                port = _Port(number, ifname, sock, see_outgoing=not ignores)
                if self.rx_ring and not fast:  # the fast path maps its own ring
                    port.ring = _attach_ring(sock)
                    port.view = memoryview(port.ring)
                self._ports[number] = port
            if self.pcap_dir:
                self._pcaps = PortPcaps(self.pcap_dir, list(self._ports))
            self._wake_r, self._wake_w = os.pipe()
            if fast:
                self._start_fastpath()
            if self.kernel is not None:
                self.pipeline.attach_fastpath(self.kernel)
        except BaseException:
            self._close()
            raise
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="p4cf-dataplane", daemon=True)
        self._thread.start()
        return self

    def _wants_fastpath(self) -> bool:
        """Whether to forward with the C fast path (see the module doc)."""
        usable = fastpath_available() and not self.pcap_dir
        if self.fastpath and not usable:
            raise RuntimeError("C fast path requested but unavailable (not built, P4CF_FASTPATH=0"
                               " or pcap capture)")
        return usable and self.fastpath is not False

    def _start_offload(self) -> None:
        """Attach the kernel fast path if wanted and possible (see the module doc)."""
        if self.offload is False:
            self.offload_error = "switched off"
            return
        if self.pcap_dir or not offload_wanted():
            reason = "pcap capture needs every frame in user space" if self.pcap_dir else "P4CF_OFFLOAD=0"
            if self.offload:
                raise OffloadUnavailable(f"kernel fast path requested but {reason}")
            self.offload_error = reason
            return
        try:
            self.kernel = KernelOffload(self.port_names, self.netns).start()
        except OffloadUnavailable as exc:
            if self.offload:
                raise
            self.offload_error = str(exc)

    def _start_fastpath(self) -> None:
        """Set up the C flow table and forwarder, and attach the table to the pipeline."""
        table = _fastpath.FlowTable()
        self._forwarder = _fastpath.Forwarder(
            table, [(p.sock.fileno(), p.number, p.see_outgoing) for p in self._ports.values()],
            self._wake_r, ring=self.rx_ring)
        self.pipeline.attach_fastpath(table)
        self._table = table
        self.fast = True

    def stop(self) -> None:
        """Stop forwarding, wait for the thread, close sockets and pcap files."""
        if self._thread is not None:
            self._stopping = True
            os.write(self._wake_w, b"x")
            self._thread.join(timeout=10)
            self._thread = None
        self._close()

    def __enter__(self) -> Dataplane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def flush_pcaps(self) -> None:
        """Flush the pcap files (if any) so they can be read while the switch runs."""
        if self._pcaps is not None:
            self._pcaps.flush()

    def stats(self) -> dict[int, PortStats]:
        """Frame counts per port number (Python, C and kernel fast paths together)."""
        fast = self._forwarder.stats() if self._forwarder is not None else {}
        kernel = self.kernel.port_stats() if self.kernel is not None else {}
        out = {}
        for n, p in self._ports.items():
            rx, tx, dropped, tx_errors = fast.get(n, (0, 0, 0, 0))
            krx, ktx, kdropped = kernel.get(n, (0, 0, 0))
            s = p.stats
            out[n] = PortStats(s.rx + rx + krx, s.tx + tx + ktx, s.dropped + dropped + kdropped,
                               s.tx_errors + tx_errors)
        return out

    def kernel_stats(self) -> dict[int, PortStats]:
        """The part of `stats()` the kernel fast path handled (empty when it is not running)."""
        if self.kernel is None:
            return {}
        return {n: PortStats(rx, tx, dropped) for n, (rx, tx, dropped) in self.kernel.port_stats().items()}

    def fastpath_stats(self) -> dict[int, PortStats]:
        """The part of `stats()` the C fast path handled without Python (empty when off)."""
        if self._forwarder is None:
            return {}
        return {n: PortStats(*v) for n, v in self._forwarder.stats().items()}

    def _close(self) -> None:
        if self.kernel is not None:  # first: no frame may leave through it after the stop
            self.pipeline.detach_fastpath(self.kernel)  # keeps the counts it gathered
            self.kernel.close()
            self.kernel = None
        if self._table is not None:
            self.pipeline.detach_fastpath(self._table)  # keeps the counts it gathered
            self._table = None
        self._forwarder = None
        for port in self._ports.values():
            if port.view is not None:
                port.view.release()
            if port.ring is not None:
                port.ring.close()
            port.sock.close()
        self._ports = {}
        if self._pcaps is not None:
            self._pcaps.close()
            self._pcaps = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    # ---- forwarding ----------------------------------------------------------------------
    def _run(self) -> None:
        if self._forwarder is not None:
            self._run_fast(self._forwarder)
            return
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        by_fd = {p.sock.fileno(): p for p in self._ports.values()}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        receive: Callable[[_Port], int] = self._drain_ring if self.rx_ring else self._drain_socket
        cpu0 = time.thread_time()
        try:
            while not self._stopping:
                for fd, event in poller.poll(500):
                    port = by_fd.get(fd)
                    if port is None:
                        continue
                    if event & (select.POLLERR | select.POLLNVAL):
                        if not _clear_error(port):
                            poller.unregister(fd)  # socket unusable (interface gone)
                            del by_fd[fd]
                            continue
                    receive(port)
                self.cpu_seconds = time.thread_time() - cpu0
        except BaseException as exc:  # kept for the owner to see; the thread must not die silently
            self.error = exc
            raise

    def _run_fast(self, forwarder: _fastpath.Forwarder) -> None:
        """The C loop forwards; Python handles the frames it hands back (and teaches it)."""
        cpu0 = time.thread_time()
        try:
            while not self._stopping:
                for number, vnet, frame in forwarder.run(500):
                    self._handle(self._ports[number], vnet, memoryview(frame))
                self.cpu_seconds = time.thread_time() - cpu0
        except BaseException as exc:  # kept for the owner to see; the thread must not die silently
            self.error = exc
            raise

    def _drain_socket(self, port: _Port) -> int:
        """Take up to BATCH frames from `port` with recv()."""
        buf = port.buf
        view = memoryview(buf)
        sock = port.sock
        handled = 0
        filter_outgoing = port.see_outgoing
        while handled < BATCH:
            try:
                if filter_outgoing:
                    n, addr = sock.recvfrom_into(buf, 0, socket.MSG_DONTWAIT)
                    if addr[2] == PACKET_OUTGOING:
                        continue
                else:
                    n = sock.recv_into(buf, 0, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                port.stats.dropped += 1
                break
            handled += 1
            if n > VNET_LEN:
                self._handle(port, bytes(buf[:VNET_LEN]), view[VNET_LEN:n])
        return handled

    def _drain_ring(self, port: _Port) -> int:
        """Walk the TPACKET_V3 blocks the kernel has handed over, then give them back."""
        ring = port.ring
        view = port.view
        assert ring is not None and view is not None
        handled = 0
        while True:
            base = port.block * RING_BLOCK_SIZE
            status, num, first = struct.unpack_from("<III", ring, base + 8)
            if not status & TP_STATUS_USER:
                return handled
            off = base + first
            for _ in range(num):
                next_off, _, _, snaplen, length, _, mac = struct.unpack_from("<IIIIIIH", ring, off)
                pkttype = ring[off + 48 + 10]
                if pkttype != PACKET_OUTGOING and snaplen == length and mac >= VNET_LEN:
                    start = off + mac
                    self._handle(port, ring[start - VNET_LEN:start], view[start:start + snaplen])
                elif snaplen != length:
                    port.stats.dropped += 1  # cannot happen with blocks larger than any frame
                handled += 1
                off += next_off
            struct.pack_into("<I", ring, base + 8, TP_STATUS_KERNEL)
            port.block = (port.block + 1) % RING_BLOCK_NR

    def _handle(self, port: _Port, vnet: bytes, frame: memoryview) -> None:
        """One received frame (a view of the receive buffer, rewritten in place): pipeline,
        then out of its egress port (or dropped)."""
        port.stats.rx += 1
        pcaps = self._pcaps
        if pcaps is not None:
            pcaps.rx[port.number].write(frame)
        vnet, partial, segs, nbytes = prepare_offloads(vnet, frame)
        try:
            if self._table is not None or self.kernel is not None:
                learn(self._table, self.kernel, self.pipeline, frame)  # before it is rewritten
            out = self.pipeline.process_frame(frame, port.number, nbytes, segs, partial)
        except Exception:  # a program bug must not stop the switch; count and drop
            port.stats.dropped += 1
            return
        if out is None:
            port.stats.dropped += 1
            return
        self._send(port, out[0], vnet, out[1])

    def _send(self, ingress: _Port, number: int, vnet: bytes, frame: bytearray | memoryview) -> None:
        """Send `frame` with its virtio_net_hdr out of port `number` (dropped if absent)."""
        egress = self._ports.get(number)
        if egress is None:
            ingress.stats.dropped += 1
            return
        if self._pcaps is not None:
            self._pcaps.tx[number].write(frame)
        try:
            egress.sock.sendmsg([vnet, frame])
            egress.stats.tx += 1
        except OSError:
            egress.stats.tx_errors += 1


def _clear_error(port: _Port) -> bool:
    """Read (and so clear) a pending socket error, e.g. ENETDOWN while an interface is down;
    False when the socket itself is gone."""
    try:
        port.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return True
    except OSError:
        return False


def _open_socket(ifname: str, proto: int = ETH_P_ALL) -> tuple[socket.socket, bool]:
    """A packet socket on `ifname` (in the calling thread's namespace) with vnet headers,
    receiving `proto` frames, and whether the kernel keeps outgoing packets away from it."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # receives nothing until bound
    ignores_outgoing = True
    try:
        sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:
            ignores_outgoing = False  # kernel < 4.20: filtered by packet type instead
        try:
            sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        except OSError:
            pass
        for opt, size in ((SO_RCVBUFFORCE, 16 << 20), (SO_SNDBUFFORCE, 16 << 20)):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, size)
            except OSError:
                pass
        sock.bind((ifname, proto))
    except BaseException:
        sock.close()
        raise
    return sock, ignores_outgoing


def _attach_ring(sock: socket.socket) -> mmap.mmap:
    """Set up and map a TPACKET_V3 receive ring on `sock`."""
    sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
    frame_nr = RING_BLOCK_SIZE // RING_FRAME_SIZE * RING_BLOCK_NR
    req = struct.pack("<IIIIIII", RING_BLOCK_SIZE, RING_BLOCK_NR, RING_FRAME_SIZE, frame_nr,
                      RING_RETIRE_TOV_MS, 0, 0)
    sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
    return mmap.mmap(sock.fileno(), RING_BLOCK_SIZE * RING_BLOCK_NR,
                     mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
