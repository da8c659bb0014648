"""Raw frames in and out of a host's netns, for tests that send through a switch.

Shared by the tests that check a switch target forwards what P4Runtime programs, so that they
open their sockets and wait for the forwarded frame the same way.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from scapy.layers.l2 import Ether

from p4cf_kit.netns import call_in_netns

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23  # not in the socket module: a host must not read back what it sent


def packet_socket(netns: str, ifname: str) -> socket.socket:
    """An AF_PACKET socket on `ifname` inside `netns` that sees only incoming frames."""
    def open_() -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        s.bind((ifname, ETH_P_ALL))
        return s
    return call_in_netns(netns, open_)


def receive_matching(sock: socket.socket, match: Callable[[bytes], bool], timeout: float) -> bytes | None:
    """The raw bytes of the first frame `match` accepts that `sock` receives within `timeout` s.

    `sock` needs a short timeout of its own so the wait can end; other frames are skipped.
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        if match(data):
            return data
    return None


def receive_tcp_to(sock: socket.socket, dport: int, timeout: float) -> bytes | None:
    """The first IPv4/TCP frame to `dport` (no IP options) `sock` receives within `timeout` s."""
    port = dport.to_bytes(2, "big")
    return receive_matching(sock, lambda d: len(d) >= 38 and d[12:14] == b"\x08\x00" and d[36:38] == port,
                            timeout)


class HostPort:
    """A packet socket on a host's interface, inside its namespace: send frames, sniff frames.

    `poll` is the socket's own timeout (how often a wait looks at the clock); `wait` is how
    long `expect` waits by default for a frame that should come.
    """

    def __init__(self, netns: str, ifname: str, poll: float = 0.05, wait: float = 2.0) -> None:
        self.sock = packet_socket(netns, ifname)
        self.sock.settimeout(poll)
        self.wait = wait

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def drain(self) -> None:
        """Forget every frame received so far."""
        try:
            while True:
                self.sock.recv(65536)
        except (TimeoutError, BlockingIOError):
            pass

    def expect(self, match: Callable[[Ether], bool], timeout: float | None = None) -> Ether | None:
        """The first received frame `match` accepts within `timeout` s (others are skipped)."""
        end = time.monotonic() + (self.wait if timeout is None else timeout)
        while time.monotonic() < end:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            pkt = Ether(data)
            if match(pkt):
                return pkt
        return None

    def frames(self, quiet: float) -> list[Ether]:
        """Every frame received until `quiet` s pass without one."""
        got: list[Ether] = []
        while (pkt := self.expect(lambda p: True, timeout=quiet)) is not None:
            got.append(pkt)
        return got

    def close(self) -> None:
        self.sock.close()
