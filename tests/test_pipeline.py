"""Program semantics of the embedded switch's load balancer, frame by frame (no network)."""

from __future__ import annotations

import ipaddress
import random
from collections import Counter

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

from p4cf_kit.switch.embedded.crc16 import crc16
from p4cf_kit.switch.embedded.pipeline import LoadBalancerPipeline

VIP = "10.0.0.100"
CLIENT = "10.0.1.1"
BACKENDS = ["10.0.2.1", "10.0.3.1", "10.0.4.1"]
SW_MAC = 0x02_00_00_00_00_FE
HOST_MAC = {1: 0x02_00_00_00_00_01, 2: 0x02_00_00_00_00_02, 3: 0x02_00_00_00_00_03,
            4: 0x02_00_00_00_00_04}


def ip(a: str) -> int:
    return int(ipaddress.IPv4Address(a))


def mac(m: int) -> str:
    return ":".join(f"{b:02x}" for b in m.to_bytes(6, "big"))


def program(p: LoadBalancerPipeline, backends: int = 2) -> None:
    """The kit's LB entries: VIP -> ECMP over backends 1..n, client entry 0 on port 1."""
    p.set_ecmp_group(ip(VIP), 32, "set_ecmp_select", {"ecmp_base": 1, "ecmp_count": backends})
    p.set_ecmp_group(ip("10.0.1.0"), 24, "set_rewrite_src", {"new_src": ip(VIP)})
    p.set_ecmp_nhop(0, "set_nhop", {"nhop_dmac": HOST_MAC[1], "nhop_ipv4": ip(CLIENT), "port": 1})
    for i in range(backends):
        p.set_ecmp_nhop(i + 1, "set_nhop", {"nhop_dmac": HOST_MAC[i + 2],
                                            "nhop_ipv4": ip(BACKENDS[i]), "port": i + 2})
    for port in range(1, backends + 2):
        p.set_send_frame(port, "rewrite_mac", {"smac": SW_MAC})


@pytest.fixture
def lb() -> LoadBalancerPipeline:
    p = LoadBalancerPipeline()
    program(p)
    return p


def to_vip(sport: int = 40000, ttl: int = 64, payload: bytes = b"hello") -> Ether:
    return (Ether(src=mac(HOST_MAC[1]), dst=mac(SW_MAC)) / IP(src=CLIENT, dst=VIP, ttl=ttl)
            / TCP(sport=sport, dport=5001, flags="PA", seq=1000) / payload)


def expected_select(src: str, dst: str, proto: int, sport: int | None, dport: int | None,
                    base: int, count: int) -> int:
    data = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + bytes([proto])
    if sport is not None:
        data += sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    return base + crc16(data) % count


def assert_checksums_valid(frame: bytes) -> None:
    pkt = Ether(frame)
    ip_sum, pkt[IP].chksum = pkt[IP].chksum, None
    tcp_sum = None
    if TCP in pkt:
        tcp_sum, pkt[TCP].chksum = pkt[TCP].chksum, None
    again = Ether(bytes(pkt))
    assert again[IP].chksum == ip_sum
    if tcp_sum is not None:
        assert again[TCP].chksum == tcp_sum


def test_crc16_vectors() -> None:
    # CRC-16/ARC catalogue check value and a few fixed vectors.
    assert crc16(b"123456789") == 0xBB3D
    assert crc16(b"") == 0
    assert crc16(b"\x00") == 0
    assert crc16(b"\x01") == 0xC0C1
    assert crc16(b"A") == 0x30C0


def test_vip_to_backend_dnat(lb: LoadBalancerPipeline) -> None:
    frame = bytes(to_vip(sport=40000))
    out = lb.process(frame, 1)
    assert out is not None
    port, data = out
    sel = expected_select(CLIENT, VIP, 6, 40000, 5001, 1, 2)
    assert port == sel + 1
    pkt = Ether(data)
    assert pkt[IP].dst == BACKENDS[sel - 1] and pkt[IP].src == CLIENT
    assert pkt.dst == mac(HOST_MAC[port]) and pkt.src == mac(SW_MAC)
    assert pkt[IP].ttl == 63
    assert bytes(pkt[TCP].payload) == b"hello"
    assert_checksums_valid(data)


def test_every_backend_reachable(lb: LoadBalancerPipeline) -> None:
    seen = {lb.process(bytes(to_vip(sport=s)), 1)[0] for s in range(40000, 40100)}
    assert seen == {2, 3}


def test_return_path_snat(lb: LoadBalancerPipeline) -> None:
    reply = (Ether(src=mac(HOST_MAC[2]), dst=mac(SW_MAC)) / IP(src=BACKENDS[0], dst=CLIENT, ttl=64)
             / TCP(sport=5001, dport=40000, flags="SA") / (b"x" * 300))
    port, data = lb.process(bytes(reply), 2)
    pkt = Ether(data)
    assert port == 1 and pkt[IP].src == VIP and pkt[IP].dst == CLIENT and pkt[IP].ttl == 63
    assert pkt.dst == mac(HOST_MAC[1])
    assert_checksums_valid(data)


@pytest.mark.parametrize("ttl", [0, 1])
def test_ttl_expired_dropped(lb: LoadBalancerPipeline, ttl: int) -> None:
    assert lb.process(bytes(to_vip(ttl=ttl)), 1) is None
    assert lb.nhop_counter(1) == (0, 0) and lb.nhop_counter(2) == (0, 0)


def test_ttl_two_forwarded(lb: LoadBalancerPipeline) -> None:
    _, data = lb.process(bytes(to_vip(ttl=2)), 1)
    assert Ether(data)[IP].ttl == 1


def test_non_ipv4_dropped(lb: LoadBalancerPipeline) -> None:
    assert lb.process(bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=VIP)), 1) is None
    assert lb.process(bytes(Ether(type=0x86DD) / (b"\x60" + b"\x00" * 60)), 1) is None
    assert lb.process(b"", 1) is None


def test_no_entry_dropped() -> None:
    p = LoadBalancerPipeline()
    assert p.process(bytes(to_vip()), 1) is None
    program(p)
    p.del_send_frame(2)
    p.del_send_frame(3)
    assert p.process(bytes(to_vip()), 1) is None  # egress default drop


def test_group_miss_drops_without_touching_nhop(lb: LoadBalancerPipeline) -> None:
    """A miss in ecmp_group (default drop) must not reach the client's ecmp_nhop entry 0."""
    frame = bytes(Ether() / IP(src=CLIENT, dst="192.0.2.7") / TCP())
    before = lb.nhop_counter(0)
    assert lb.process(frame, 2) is None
    assert lb.nhop_counter(0) == before


def test_counters_count_hits_with_frame_bytes(lb: LoadBalancerPipeline) -> None:
    totals: Counter[int] = Counter()
    sizes: Counter[int] = Counter()
    for s in range(200):
        frame = bytes(to_vip(sport=30000 + s, payload=b"y" * (s % 50)))
        port, _ = lb.process(frame, 1)
        totals[port - 1] += 1
        sizes[port - 1] += len(frame)
    for sel in (1, 2):
        assert lb.nhop_counter(sel) == (totals[sel], sizes[sel])
    assert lb.nhop_counter(0) == (0, 0)
    lb.process(bytes(to_vip(ttl=1)), 1)  # not a hit
    assert lb.nhop_counter(1) == (totals[1], sizes[1])
    # modify keeps the counter, set_nhop_counter overwrites it, delete forgets it
    lb.set_ecmp_nhop(1, "set_nhop", {"nhop_dmac": HOST_MAC[4], "nhop_ipv4": ip("10.0.9.9"), "port": 3})
    assert lb.nhop_counter(1) == (totals[1], sizes[1])
    lb.set_nhop_counter(1, 5, 7)
    assert lb.nhop_counter(1) == (5, 7)
    lb.del_ecmp_nhop(1)
    with pytest.raises(KeyError):
        lb.nhop_counter(1)


def test_write_takes_effect_next_packet(lb: LoadBalancerPipeline) -> None:
    frame = bytes(to_vip(sport=40001))
    port, data = lb.process(frame, 1)
    sel = port - 1
    lb.set_ecmp_nhop(sel, "set_nhop", {"nhop_dmac": HOST_MAC[4], "nhop_ipv4": ip("10.0.9.9"), "port": 3})
    port2, data2 = lb.process(frame, 1)
    assert port2 == 3 and Ether(data2)[IP].dst == "10.0.9.9"
    lb.set_ecmp_group_default("drop", {})
    lb.clear()
    assert lb.process(frame, 1) is None


def test_lpm_longest_prefix_wins(lb: LoadBalancerPipeline) -> None:
    lb.set_ecmp_group(ip("10.0.0.0"), 8, "drop", {})
    assert lb.process(bytes(to_vip()), 1) is not None
    lb.del_ecmp_group(ip(VIP), 32)
    assert lb.process(bytes(to_vip()), 1) is None  # the /8 drop now matches


def test_udp_hash_without_ports(lb: LoadBalancerPipeline) -> None:
    frame = bytes(Ether() / IP(src=CLIENT, dst=VIP) / UDP(sport=1234, dport=53) / b"q")
    port, data = lb.process(frame, 1)
    assert port == expected_select(CLIENT, VIP, 17, None, None, 1, 2) + 1
    assert Ether(data)[UDP].chksum == Ether(frame)[UDP].chksum  # L4 untouched
    assert_ip_ok = Ether(data)
    assert_ip_ok[IP].chksum = None
    assert Ether(bytes(assert_ip_ok))[IP].chksum == Ether(data)[IP].chksum


def test_ip_options_not_tcp_and_header_checksum_over_20_bytes(lb: LoadBalancerPipeline) -> None:
    pkt = Ether() / IP(src=CLIENT, dst=VIP, options=[b"\x01\x01\x01\x00"]) / TCP(sport=1, dport=2)
    frame = bytes(pkt)
    port, data = lb.process(frame, 1)
    assert port == expected_select(CLIENT, VIP, 6, None, None, 1, 2) + 1
    assert data[34:] == frame[34:]  # options and TCP untouched
    from p4cf_kit.switch.embedded.packet import ipv4_checksum
    assert int.from_bytes(data[24:26], "big") == ipv4_checksum(data[14:34])


def test_fragment_not_parsed_as_tcp(lb: LoadBalancerPipeline) -> None:
    frame = bytes(Ether() / IP(src=CLIENT, dst=VIP, frag=10) / TCP(sport=1, dport=2))
    port, data = lb.process(frame, 1)
    assert port == expected_select(CLIENT, VIP, 6, None, None, 1, 2) + 1
    assert data[34:] == frame[34:]


def test_truncated_tcp_routed_as_ipv4(lb: LoadBalancerPipeline) -> None:
    frame = bytes(Ether() / IP(src=CLIENT, dst=VIP) / TCP(sport=1, dport=2))[:44]
    port, data = lb.process(frame, 1)
    assert port == expected_select(CLIENT, VIP, 6, None, None, 1, 2) + 1
    assert data[34:] == frame[34:] and len(data) == 44
    assert lb.process(frame[:30], 1) is None  # cut inside IPv4: no valid IPv4, dropped


def test_count_zero_is_base(lb: LoadBalancerPipeline) -> None:
    lb.set_ecmp_group(ip(VIP), 32, "set_ecmp_select", {"ecmp_base": 2, "ecmp_count": 0})
    for s in range(20):
        assert lb.process(bytes(to_vip(sport=s + 1)), 1)[0] == 3


def test_select_truncated_to_14_bits(lb: LoadBalancerPipeline) -> None:
    lb.set_ecmp_group(ip(VIP), 32, "set_ecmp_select", {"ecmp_base": 0x4001, "ecmp_count": 1})
    assert lb.process(bytes(to_vip()), 1)[0] == 2  # 0x4001 & 0x3fff == 1


def test_bad_writes_rejected(lb: LoadBalancerPipeline) -> None:
    with pytest.raises(ValueError):
        lb.set_ecmp_nhop(1, "set_rewrite_src", {"new_src": 1})
    with pytest.raises(ValueError):
        lb.set_send_frame(1, "rewrite_mac", {"smac": 1 << 48})
    with pytest.raises(ValueError):
        lb.set_ecmp_nhop(1 << 14, "drop", {})


@pytest.mark.parametrize("backends", [2, 3])
def test_hash_spread_even(backends: int) -> None:
    p = LoadBalancerPipeline()
    program(p, backends)
    rng = random.Random(7)
    hits: Counter[int] = Counter()
    template = bytearray(bytes(Ether() / IP(src=CLIENT, dst=VIP) / TCP(dport=5001)))
    for _ in range(10_000):  # random client address (10.0.1.x) and port; checksums do not matter
        template[29] = rng.randrange(1, 255)
        template[34:36] = rng.randrange(1024, 65536).to_bytes(2, "big")
        hits[p.process(bytes(template), 1)[0]] += 1
    share = 10_000 / backends
    assert set(hits) == set(range(2, backends + 2))
    for n in hits.values():
        assert abs(n - share) / share < 0.05, hits
