"""A gratuitous signal from the restored side that ends the client's retransmission backoff.

Why: while the backend was away, a client connection whose requests went
unanswered is in RTO backoff; it retransmits only at the next backoff step,
up to twice the frozen time later, although the backend answers again right
after the restore. Linux implements RFC 6069: an ICMP host-unreachable quoting
a connection's oldest unacknowledged byte (snd_una) undoes one backoff step,
and retransmits at once when the shortened timer has already expired. So after
the switch points at the restored backend, the destination pod sends each
client connection of the checkpoint a few such ICMPs; the client retransmits
immediately and the connection resumes one round trip later. Connections not in
backoff ignore them (the kernel checks the backoff and the sequence number).

What is quoted is known from the checkpoint: the client's address and port
(the socket's peer), the VIP and service port it connected to, and its snd_una,
which equals the server's rcv_nxt (`inq_seq` of the socket's tcp-stream image)
once the restored socket's first ACK, sent at restore, has reached the client.
The raw socket is opened in the destination pod's netns before the migration
starts (a thread enters the netns; setns on a thread affects only that thread),
so sending costs well under a millisecond. Packets leave the pod like any reply:
through the switch, which rewrites their source to the VIP. On another machine the same
socket is held by a small sender started there in the pod's netns while the migration
prepares (`RemoteRawSocket`): the kit builds the packets and hands them over its stdin.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from p4cf_kit.migration.rewrite import FILES_IMG, pycriu_images, split_entries
from p4cf_kit.netns import call_in_netns_path

if TYPE_CHECKING:
    from p4cf_kit.machines.machine import Machine

ICMP_DEST_UNREACH, ICMP_HOST_UNREACH = 3, 1
DEFAULT_COPIES = 8   # each undoes one backoff step; 8 covers any gap shorter than ~256 RTOs


@dataclass(frozen=True)
class ClientSeq:
    """One client connection of a checkpoint: the client's end and its snd_una."""

    client_ip: str
    client_port: int
    service_port: int
    snd_una: int


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def unreachable(conn: ClientSeq, vip: str) -> bytes:
    """ICMP host-unreachable quoting a segment client -> VIP at the connection's snd_una."""
    quoted_ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, socket.IPPROTO_TCP, 0,
                            ipaddress.IPv4Address(conn.client_ip).packed, ipaddress.IPv4Address(vip).packed)
    quoted_tcp = struct.pack("!HHI", conn.client_port, conn.service_port, conn.snd_una)
    body = struct.pack("!I", 0) + quoted_ip + quoted_tcp
    header = struct.pack("!BBH", ICMP_DEST_UNREACH, ICMP_HOST_UNREACH, 0)
    return struct.pack("!BBH", ICMP_DEST_UNREACH, ICMP_HOST_UNREACH, _checksum(header + body)) + body


def _first_entry(data: bytes) -> Any:  # a pycriu protobuf message
    """The tcp-stream entry of an image (entry then raw queue bytes, so only the first frame)."""
    images = pycriu_images()
    head = 8 if struct.unpack_from("=i", data, 0)[0] == images.magic.by_name["IMG_COMMON"] else 4
    size = struct.unpack_from("=i", data, head)[0]
    entry = images.pb.tcp_stream_entry()
    entry.ParseFromString(data[head + 4:head + 4 + size])
    return entry


def client_connections(images_dir: str | Path) -> list[ClientSeq]:
    """The established TCP connections in a CRIU image directory, with each client's snd_una."""
    images = pycriu_images()
    folder = Path(images_dir)
    files = folder / FILES_IMG
    if not files.is_file():
        return []
    found = []
    for raw in split_entries(files.read_bytes())[1]:
        entry = images.pb.file_entry()
        entry.ParseFromString(raw)
        isk = entry.isk
        if entry.type != images.pb.INETSK or isk.family != socket.AF_INET or isk.state != 1:
            continue
        stream = folder / f"tcp-stream-{isk.ino:x}.img"
        if not stream.is_file():
            continue
        peer = str(ipaddress.IPv4Address(struct.pack("=I", isk.dst_addr[0])))
        found.append(ClientSeq(peer, isk.dst_port, isk.src_port, _first_entry(stream.read_bytes()).inq_seq))
    return found


def raw_socket_in(netns_path: str) -> socket.socket:
    """A raw ICMP socket living in the netns at `netns_path` (opened from a throwaway thread)."""
    return call_in_netns_path(netns_path, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW,
                                                                socket.IPPROTO_ICMP))


class RawSender(Protocol):
    """What `nudge` sends through: a raw ICMP socket here, or one held on another machine."""

    def sendto(self, data: bytes, address: tuple[str, int], /) -> int: ...

    def close(self) -> None: ...


# The sender on another machine: one raw ICMP socket in the netns it was started in; each
# stdin line "IP HEX" is one packet; it answers "ready" once, then nothing (stderr on errors).
_REMOTE_SENDER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
print("ready", flush=True)
for line in sys.stdin:
    ip, _, packet = line.partition(" ")
    s.sendto(bytes.fromhex(packet.strip()), (ip, 0))
"""


class RemoteRawSocket:
    """A raw ICMP socket in the netns at `netns_path` on `machine` (python3 there, through
    nsenter over the machine's connection); started and checked before the freeze."""

    def __init__(self, machine: Machine, netns_path: str, timeout: float = 30.0) -> None:
        self.machine = machine
        self._proc = machine.popen(["nsenter", f"--net={netns_path}", "python3", "-u", "-c", _REMOTE_SENDER],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        while not select.select([self._proc.stdout], [], [], 0.05)[0]:
            if time.monotonic() > deadline or self._proc.poll() is not None:
                break
        line = self._proc.stdout.readline().decode().strip() if self._proc.poll() is None else ""
        if line != "ready":
            self.close()
            err = self._proc.stderr.read().decode().strip() if self._proc.stderr else ""
            raise OSError(f"machine {machine.name!r}: the nudge sender in {netns_path} did not start: "
                          f"{err or 'no answer'}")

    def sendto(self, data: bytes, address: tuple[str, int], /) -> int:
        assert self._proc.stdin is not None
        self._proc.stdin.write(f"{address[0]} {data.hex()}\n".encode())
        self._proc.stdin.flush()
        return len(data)

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()


def nudge(sock: RawSender, conns: list[ClientSeq], vip: str, copies: int = DEFAULT_COPIES) -> int:
    """Send `copies` unreachables per connection; returns how many packets went out."""
    sent = 0
    for conn in conns:
        packet = unreachable(conn, vip)
        for _ in range(copies):
            sock.sendto(packet, (conn.client_ip, 0))
            sent += 1
    return sent
