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
"""

from __future__ import annotations

import mmap
import os
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from p4cf_kit.netns import call_in_netns
from p4cf_kit.switch.embedded import packet as pk
from p4cf_kit.switch.embedded.pcap import PortPcaps
from p4cf_kit.switch.embedded.pipeline import LoadBalancerPipeline

ETH_P_ALL = 0x0003
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


def gso_segments(frame: bytes | bytearray, gso_type: int, gso_size: int, l4_off: int) -> tuple[int, int]:
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


def complete_checksum(frame: bytearray, csum_start: int, csum_offset: int) -> None:
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
    interfaces live in (sockets are opened there; the caller stays where it is).
    """

    def __init__(self, pipeline: LoadBalancerPipeline, ports: dict[int, str],
                 pcap_dir: str | None = None, netns: str | None = None,
                 rx_ring: bool = False) -> None:
        self.pipeline = pipeline
        self.port_names = dict(ports)
        self.pcap_dir = pcap_dir
        self.netns = netns
        self.rx_ring = rx_ring
        self._ports: dict[int, _Port] = {}
        self._pcaps: PortPcaps | None = None
        self._thread: threading.Thread | None = None
        self._wake_r = self._wake_w = -1
        self._stopping = False
        self.error: BaseException | None = None
        self.cpu_seconds = 0.0  # CPU time of the forwarding thread (capacity estimates)

    # ---- life cycle ----------------------------------------------------------------------
    def start(self) -> "Dataplane":
        """Open the port sockets and start forwarding in a background thread."""
        if self._thread is not None:
            raise RuntimeError("data plane already started")
        try:
            for number, ifname in self.port_names.items():
                sock, ignores = call_in_netns(self.netns, lambda n=ifname: _open_socket(n))
                port = _Port(number, ifname, sock, see_outgoing=not ignores)
                if self.rx_ring:
                    port.ring = _attach_ring(sock)
                    port.view = memoryview(port.ring)
                self._ports[number] = port
            if self.pcap_dir:
                self._pcaps = PortPcaps(self.pcap_dir, list(self._ports))
        except BaseException:
            self._close()
            raise
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="p4cf-dataplane", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop forwarding, wait for the thread, close sockets and pcap files."""
        if self._thread is not None:
            self._stopping = True
            os.write(self._wake_w, b"x")
            self._thread.join(timeout=10)
            self._thread = None
        self._close()

    def __enter__(self) -> "Dataplane":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def flush_pcaps(self) -> None:
        """Flush the pcap files (if any) so they can be read while the switch runs."""
        if self._pcaps is not None:
            self._pcaps.flush()

    def stats(self) -> dict[int, PortStats]:
        """Frame counts per port number."""
        return {n: p.stats for n, p in self._ports.items()}

    def _close(self) -> None:
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
        try:
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


def _open_socket(ifname: str) -> tuple[socket.socket, bool]:
    """A packet socket on `ifname` (in the calling thread's namespace) with vnet headers, and
    whether the kernel keeps outgoing packets away from it."""
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
        sock.bind((ifname, ETH_P_ALL))
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
