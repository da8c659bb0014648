"""PTF-style packet tests of the load balancer, written once, run on every switch target.

Each test runs per target of `tests/targets.py` (embedded, bmv2); bmv2 is skipped, with the
fixture's reason, where simple_switch_grpc (or p4c) is not installed. One topology for the
module (kit-owned namespaces `p4cf-t-<tag>p-*`: switch ns with ports 1..3, host 1 the client,
hosts 2 and 3 the backends) and one switch per target, started in the switch ns and programmed
by the kit's controller (SwitchConnection + LoadBalancer) over P4Runtime, as in a lab.

Frames are crafted with scapy, sent and sniffed on packet sockets inside the host namespaces.
The host interfaces have no IPv4 address and their offloads are off: the hosts' kernels then
neither answer the probes (a RST to a probe would be routed by the switch too and hit the
counters) nor hand the switch partial checksums (which BMv2 would forward as they are).
What is expected comes from the P4 program: the backend from BMv2's CRC16 of the 5-tuple
(`p4cf_kit.switch.embedded.crc16`), the counters from the frames sent, read back over P4Runtime.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

from p4cf_kit.control.connection import SwitchConnection
from p4cf_kit.control.entries import as_int, read_table
from p4cf_kit.control.loadbalancer import BACKEND_BASE, CLIENT_INDEX, ECMP_NHOP, LoadBalancer, NextHop
from p4cf_kit.netns import StarTopology, ip, run_in
from p4cf_kit.switch.embedded.crc16 import crc16
from packet_io import HostPort
from targets import TARGET_NAMES, RunningSwitch, running_switch

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

TAG = f"{os.getpid() % 4096:03x}"
VIP = "10.0.0.100"
VIP_PORT = 5001
CLIENT = 1
BACKENDS = (2, 3)  # host i sits behind ecmp_nhop slot BACKEND_BASE + i - 2
QUIET = 0.4  # s without a frame after which nothing more is coming


# --- hosts: packet sockets in their namespaces ---------------------------------------------------

# --- module fixtures: one topology, one switch per target, the LB programmed on it ---------------

@pytest.fixture(scope="module")
def topo() -> Iterator[StarTopology]:
    with StarTopology(f"p4cf-t-{TAG}p-", 3) as t:
        for i in range(1, t.hosts + 1):
            ns = t.host_ns(i)
            # raw frames only: no address, so the host's kernel ignores (never answers) the probes
            ip("addr", "flush", "dev", t.HOST_IF, netns=ns)
            # full checksums on the wire, no GSO/GRO merging (BMv2 needs it; harmless for embedded)
            run_in(ns, ["ethtool", "-K", t.HOST_IF, "rx", "off", "tx", "off", "sg", "off",
                        "tso", "off", "gso", "off", "gro", "off"])
        yield t


@pytest.fixture(scope="module")
def hosts(topo: StarTopology) -> Iterator[dict[int, HostPort]]:
    ports = {i: HostPort(topo.host_ns(i), topo.HOST_IF, poll=0.02, wait=3.0)
             for i in range(1, topo.hosts + 1)}
    yield ports
    for port in ports.values():
        port.close()


def next_hop(topo: StarTopology, i: int) -> NextHop:
    return NextHop(topo.host_mac(i), topo.host_ip(i), i)


@pytest.fixture(scope="module", params=TARGET_NAMES)
def lb_switch(request, topo: StarTopology) -> Iterator[tuple[RunningSwitch, LoadBalancer]]:
    """Target `request.param` on ports 1..3 in the switch ns, the LB installed by the controller."""
    ports = {i: topo.switch_if(i) for i in range(1, topo.hosts + 1)}
    with running_switch(request.param, ports, topo.switch_ns) as sw:
        with SwitchConnection(sw.grpc_addr, sw.device_id, p4info=sw.pipeline.p4info,
                              device_config=sw.pipeline.device_config).connect(push_pipeline=True,
                                                                               timeout=20) as conn:
            lb = LoadBalancer(conn)
            lb.install(VIP, f"{topo.host_ip(CLIENT)}/24", next_hop(topo, CLIENT),
                       [next_hop(topo, i) for i in BACKENDS],
                       {i: topo.SWITCH_MAC for i in ports})
            yield sw, lb


@pytest.fixture
def lb(lb_switch, hosts) -> LoadBalancer:
    """The programmed load balancer, with every host's socket drained of earlier frames."""
    for port in hosts.values():
        port.drain()
    return lb_switch[1]


# --- frames and expectations --------------------------------------------------------------------

def to_vip(topo: StarTopology, sport: int, ttl: int = 64, dst: str = VIP, payload: bytes = b"probe") -> bytes:
    """Client -> VIP: a TCP segment (ACK) from sport to the VIP's service port."""
    return bytes(Ether(src=topo.host_mac(CLIENT), dst=topo.SWITCH_MAC)
                 / IP(src=topo.host_ip(CLIENT), dst=dst, ttl=ttl, id=sport)
                 / TCP(sport=sport, dport=VIP_PORT, flags="A", seq=1000, ack=1) / payload)


def expected_backend(topo: StarTopology, sport: int) -> int:
    """The host BMv2 sends flow (client, VIP, TCP, sport, VIP_PORT) to: base + crc16 % count."""
    key = (socket.inet_aton(topo.host_ip(CLIENT)) + socket.inet_aton(VIP) + bytes((6,))
           + sport.to_bytes(2, "big") + VIP_PORT.to_bytes(2, "big"))
    slot = BACKEND_BASE + crc16(key) % len(BACKENDS)
    return BACKENDS[slot - BACKEND_BASE]


def is_probe(sport: int, dport: int = VIP_PORT) -> Callable[[Ether], bool]:
    return lambda p: TCP in p and p[TCP].sport == sport and p[TCP].dport == dport


def valid_checksums(pkt: Ether) -> bool:
    """The IPv4 header and TCP checksums are what scapy computes afresh."""
    again = pkt.copy()
    del again[IP].chksum
    del again[TCP].chksum
    again = Ether(bytes(again))
    return again[IP].chksum == pkt[IP].chksum and again[TCP].chksum == pkt[TCP].chksum


def counters() -> dict[int, tuple[int, int]]:
    """ecmp_nhop index -> (packets, bytes) of its direct counter, read as TableEntry counter_data."""
    return {as_int(e.match["meta.ecmp_select"].exact.value): (e.packets, e.bytes)
            for e in read_table(ECMP_NHOP, with_counters=True)}


def direct_counters() -> dict[int, tuple[int, int]]:
    """The same counters read as DirectCounterEntry (wildcard over the table's entries)."""
    import p4runtime_sh.shell as sh
    out = {}
    for dce in sh.DirectCounterEntry("MyIngress.nhop_counter").read():
        msg = dce.msg()
        (field,) = msg.table_entry.match
        out[as_int(field.exact.value)] = (msg.data.packet_count, msg.data.byte_count)
    return out


def first_sports(topo: StarTopology, backend: int, n: int, start: int) -> list[int]:
    """The first `n` source ports from `start` whose flows hash to `backend`."""
    out: list[int] = []
    sport = start
    while len(out) < n:
        if expected_backend(topo, sport) == backend:
            out.append(sport)
        sport += 1
    return out


# --- tests --------------------------------------------------------------------------------------

def test_vip_to_each_backend_with_dnat(topo, hosts, lb) -> None:
    """Flows to the VIP reach both backends, rewritten as set_nhop and rewrite_mac say."""
    for backend in BACKENDS:
        for sport in first_sports(topo, backend, 3, 42000):
            hosts[CLIENT].send(to_vip(topo, sport, ttl=64))
            got = hosts[backend].expect(is_probe(sport))
            assert got is not None, f"flow {sport} did not reach backend h{backend}"
            assert got[Ether].dst == topo.host_mac(backend)  # set_nhop's nhop_dmac
            assert got[Ether].src == topo.SWITCH_MAC  # rewrite_mac of the egress port
            assert got[IP].dst == topo.host_ip(backend)  # DNAT
            assert got[IP].src == topo.host_ip(CLIENT)  # the source is left alone
            assert got[IP].ttl == 63
            assert valid_checksums(got), f"bad checksums on {got.summary()}"
            assert bytes(got[TCP].payload) == b"probe"


CHOSEN: dict[str, dict[int, int]] = {}  # target -> {sport: backend it delivered the flow to}


def test_backend_choice_is_bmv2_crc16(topo, hosts, lb, lb_switch) -> None:
    """Each flow goes to base + CRC16(src, dst, proto, sport, dport) % count, and only there;
    the same flows sent through every target land on the same backends."""
    sports = range(43000, 43040)
    want = {b: {s for s in sports if expected_backend(topo, s) == b} for b in BACKENDS}
    assert all(want.values()), "the sample must cover both backends"
    for sport in sports:
        hosts[CLIENT].send(to_vip(topo, sport))
    chosen: dict[int, int] = {}
    for backend in BACKENDS:
        got = {p[TCP].sport for p in hosts[backend].frames(QUIET) if TCP in p and p[TCP].dport == VIP_PORT}
        assert got == want[backend], f"h{backend}: got {sorted(got)}, CRC16 says {sorted(want[backend])}"
        chosen.update((s, backend) for s in got)
    assert hosts[CLIENT].frames(quiet=0.05) == []
    CHOSEN[lb_switch[0].target] = chosen
    if len(CHOSEN) == len(TARGET_NAMES):  # the last target's run compares them all
        first, *others = CHOSEN.values()
        assert all(other == first for other in others), {t: sorted(c.items()) for t, c in CHOSEN.items()}


def test_return_path_snat(topo, hosts, lb) -> None:
    """A backend's reply to the client leaves with the VIP as its source (entry 0: the client)."""
    for backend in BACKENDS:
        sport = 44000 + backend
        reply = (Ether(src=topo.host_mac(backend), dst=topo.SWITCH_MAC)
                 / IP(src=topo.host_ip(backend), dst=topo.host_ip(CLIENT), ttl=64)
                 / TCP(sport=VIP_PORT, dport=sport, flags="SA", seq=7, ack=1001) / b"reply")
        hosts[backend].send(bytes(reply))
        got = hosts[CLIENT].expect(is_probe(VIP_PORT, sport))
        assert got is not None, f"the reply from h{backend} did not reach the client"
        assert got[IP].src == VIP  # SNAT
        assert got[IP].dst == topo.host_ip(CLIENT)
        assert got[Ether].dst == topo.host_mac(CLIENT)
        assert got[Ether].src == topo.SWITCH_MAC
        assert got[IP].ttl == 63
        assert valid_checksums(got), f"bad checksums on {got.summary()}"
        assert bytes(got[TCP].payload) == b"reply"


def test_drops(topo, hosts, lb) -> None:
    """No ecmp_group match, TTL 1 and 0, ARP: nothing comes out anywhere, nothing is counted."""
    before = counters()
    dropped = {
        "no ecmp_group match": to_vip(topo, 45001, dst="10.0.9.9"),
        "TTL 1": to_vip(topo, 45002, ttl=1),
        "TTL 0": to_vip(topo, 45003, ttl=0),
        "ARP": bytes(Ether(src=topo.host_mac(CLIENT), dst="ff:ff:ff:ff:ff:ff")
                     / ARP(op=1, hwsrc=topo.host_mac(CLIENT), psrc=topo.host_ip(CLIENT), pdst=VIP)),
    }
    for frame in dropped.values():
        hosts[CLIENT].send(frame)
    # a frame that is forwarded, sent last: once it is out, the switch has seen the others
    barrier = first_sports(topo, BACKENDS[0], 1, 45100)[0]
    hosts[CLIENT].send(to_vip(topo, barrier))
    assert hosts[BACKENDS[0]].expect(is_probe(barrier)) is not None
    leaked = {i: [p.summary() for p in port.frames(QUIET)] for i, port in hosts.items()}
    assert all(not frames for frames in leaked.values()), f"dropped frames came out: {leaked}"
    after = counters()
    slot = BACKEND_BASE + BACKENDS.index(BACKENDS[0])
    assert after[slot][0] == before[slot][0] + 1  # the barrier only
    assert all(after[i] == before[i] for i in after if i != slot)


def test_direct_counters_count_packets_per_backend(topo, hosts, lb) -> None:
    """nhop_counter (TableEntry counter_data and DirectCounterEntry) counts what each backend got."""
    before = counters()
    assert direct_counters() == before
    sports = range(46000, 46025)
    frames = {s: to_vip(topo, s, payload=b"x" * (s % 7 + 10)) for s in sports}
    sent = {b: [s for s in sports if expected_backend(topo, s) == b] for b in BACKENDS}
    for frame in frames.values():
        hosts[CLIENT].send(frame)
    for backend in BACKENDS:
        got = [p[TCP].sport for p in hosts[backend].frames(QUIET) if TCP in p and p[TCP].dport == VIP_PORT]
        assert sorted(got) == sent[backend]
    after = counters()
    assert direct_counters() == after
    for backend in BACKENDS:
        slot = BACKEND_BASE + BACKENDS.index(backend)
        packets = after[slot][0] - before[slot][0]
        byte_count = after[slot][1] - before[slot][1]
        assert packets == len(sent[backend]), f"slot {slot} (h{backend})"
        assert byte_count == sum(len(frames[s]) for s in sent[backend]), f"slot {slot} (h{backend})"
    assert after[CLIENT_INDEX] == before[CLIENT_INDEX]


def test_modify_of_a_backend_takes_effect_on_the_next_packet(topo, hosts, lb) -> None:
    """Migration: one MODIFY of h2's ecmp_nhop slot to h3; the flow's next packet goes to h3."""
    moved, target = BACKENDS
    sport = first_sports(topo, moved, 1, 47000)[0]
    hosts[CLIENT].send(to_vip(topo, sport))
    assert hosts[moved].expect(is_probe(sport)) is not None
    index = lb.move_backend(topo.host_ip(moved), topo.host_mac(target), topo.host_ip(target), target)
    try:
        assert index == BACKEND_BASE + BACKENDS.index(moved)
        hosts[CLIENT].send(to_vip(topo, sport))
        got = hosts[target].expect(is_probe(sport))
        assert got is not None, "the packet after the MODIFY did not reach the new next hop"
        assert got[Ether].dst == topo.host_mac(target) and got[IP].dst == topo.host_ip(target)
        assert valid_checksums(got)
        assert hosts[moved].frames(quiet=0.2) == []
    finally:  # back to h2 by slot (the slot now holds h3's address, as does h3's own slot)
        lb.move_backend(BACKENDS.index(moved), topo.host_mac(moved), topo.host_ip(moved), moved)
    hosts[CLIENT].send(to_vip(topo, sport))
    assert hosts[moved].expect(is_probe(sport)) is not None, "moving back did not take effect"
