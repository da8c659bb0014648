"""Random, truncated and malformed frames through `process()` and the data plane's frame
handling: nothing may raise, and every forwarded frame keeps its length (the program never
adds or removes bytes). Seeded, so a failure reproduces; hypothesis is not a dependency."""

from __future__ import annotations

import random

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from frame_mutation import mutate
from p4cf_kit.switch.embedded import dataplane as dpm
from p4cf_kit.switch.embedded.pipeline import LoadBalancerPipeline

VIP = 0x0A000064


def programmed() -> LoadBalancerPipeline:
    p = LoadBalancerPipeline()
    p.set_ecmp_group(VIP, 32, "set_ecmp_select", {"ecmp_base": 1, "ecmp_count": 3})
    p.set_ecmp_group(0x0A000100, 24, "set_rewrite_src", {"new_src": VIP})
    p.set_ecmp_group(0, 0, "set_ecmp_select", {"ecmp_base": 0x3FFE, "ecmp_count": 0xFFFFFFFF})
    for sel in range(5):
        p.set_ecmp_nhop(sel, "set_nhop", {"nhop_dmac": sel, "nhop_ipv4": sel, "port": sel % 3})
    p.set_ecmp_nhop(0x3FFF, "set_nhop", {"nhop_dmac": 1, "nhop_ipv4": 1, "port": 511})
    for port in range(3):
        p.set_send_frame(port, "rewrite_mac", {"smac": 0x020000000001})
    return p


def seeds() -> list[bytes]:
    base = [
        Ether() / IP(dst="10.0.0.100") / TCP(sport=1, dport=2) / b"data",
        Ether() / IP(dst="10.0.0.100", options=[b"\x01" * 8]) / TCP() / b"opt",
        Ether() / IP(dst="10.0.0.100", frag=3, flags="MF") / TCP(),
        Ether() / IP(dst="10.0.0.100", ihl=15) / TCP(),
        Ether() / IP(dst="10.0.0.100", ihl=2, len=3) / TCP(),
        Ether() / IP(dst="10.0.0.100", len=0) / TCP(dataofs=15, options=[("NOP", None)] * 8),
        Ether() / IP(dst="10.0.1.7", ttl=2) / UDP() / b"u",
        Ether() / IP(dst="1.2.3.4") / ICMP(),
        Ether() / IP(version=6, dst="10.0.0.100") / TCP(),
        Ether() / Dot1Q(vlan=3) / IP(dst="10.0.0.100") / TCP(),
        Ether() / ARP(),
    ]
    return [bytes(p) for p in base]


def test_process_never_raises() -> None:
    p = programmed()
    rng = random.Random(20240601)
    frames = seeds()
    for i in range(6000):
        frame = mutate(rng, frames[i % len(frames)])
        out = p.process(frame, rng.randrange(3))
        if out is not None:
            port, data = out
            assert 0 <= port < 511 and len(data) == len(frame)
    for cut in range(len(frames[0]) + 1):
        p.process(frames[0][:cut], 0)


def test_offload_helpers_never_raise() -> None:
    """The data plane's GSO arithmetic and checksum completion on garbage headers."""
    p = programmed()
    rng = random.Random(7)
    frames = seeds()
    for i in range(3000):
        frame = bytearray(mutate(rng, frames[i % len(frames)]))
        gso_type = rng.choice([0, 1, 3, 4, 5, 0x81, 7])
        segs, nbytes = dpm.gso_segments(frame, gso_type, rng.randrange(0, 2000), rng.randrange(-2, 80))
        assert segs >= 1 and nbytes >= len(frame)
        dpm.complete_checksum(frame, rng.randrange(0, 80), rng.randrange(0, 40))
        p.process_frame(frame, 0, nbytes, segs, csum_partial=bool(rng.randrange(2)))
