"""Real frames over veths through a running embedded data plane (kit-owned namespaces only).

Topology: switch namespace p4cf-t-<tag>-sw with ports 1..3; host namespaces h1 (client),
h2 and h3 (backends). Every test runs against four switches: the Python recv() path, the C
fast path with recvmmsg and with its TPACKET_V2 ring (skipped where the extension is not built
or P4CF_FASTPATH=0), and the TPACKET_V3 ring with pcap capture (Python). Frames are crafted
with scapy and sent/sniffed on packet sockets opened inside the host namespaces, PTF style;
the last tests run a real kernel TCP connection with the hosts' offloads (checksum, TSO) on.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

from p4cf_kit.netns import StarTopology, popen_in, run_in
from p4cf_kit.switch.embedded.dataplane import Dataplane, fastpath_available
from p4cf_kit.switch.embedded.pipeline import LoadBalancerPipeline
from packet_io import HostPort

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

VIP = "10.0.0.100"
TAG = f"{os.getpid() % 4096:03x}"


def ipn(a: str) -> int:
    return int(ipaddress.IPv4Address(a))


def macn(m: str) -> int:
    return int(m.replace(":", ""), 16)


def program(p: LoadBalancerPipeline, topo: StarTopology) -> None:
    """VIP spread over hosts 2..n (entries 1..n-1); replies to host 1 SNATed to the VIP."""
    backends = topo.hosts - 1
    p.set_ecmp_group(ipn(VIP), 32, "set_ecmp_select", {"ecmp_base": 1, "ecmp_count": backends})
    p.set_ecmp_group(ipn(topo.host_ip(1)) & 0xFFFFFF00, 24, "set_rewrite_src", {"new_src": ipn(VIP)})
    for i in range(1, topo.hosts + 1):
        p.set_ecmp_nhop(i - 1, "set_nhop", {"nhop_dmac": macn(topo.host_mac(i)),
                                            "nhop_ipv4": ipn(topo.host_ip(i)), "port": i})
        p.set_send_frame(i, "rewrite_mac", {"smac": macn(topo.SWITCH_MAC)})


@pytest.fixture(scope="module")
def topo() -> Iterator[StarTopology]:
    with StarTopology(f"p4cf-t-{TAG}-", 3) as t:
        yield t


@pytest.fixture(scope="module", params=["kernel", "python", "fast", "fast-ring", "ring"])
def switch(request, topo: StarTopology, tmp_path_factory) -> Iterator[tuple[LoadBalancerPipeline, Dataplane]]:
    """The switch: the default (kernel fast path in front of the C one), Python per-frame
    recv(), C fast path (recvmmsg, ring), Python ring + pcaps; all but the first without the
    kernel fast path."""
    fast = request.param.startswith("fast") or request.param == "kernel"
    if fast and not fastpath_available():
        pytest.skip("C fast path not built (or P4CF_FASTPATH=0)")
    p = LoadBalancerPipeline()
    program(p, topo)
    ports = {i: topo.switch_if(i) for i in range(1, topo.hosts + 1)}
    ring = request.param.endswith("ring")
    pcap_dir = str(tmp_path_factory.mktemp("pcap")) if request.param == "ring" else None
    with Dataplane(p, ports, netns=topo.switch_ns, rx_ring=ring, pcap_dir=pcap_dir,
                   fastpath=False if request.param == "python" else None,
                   offload=request.param == "kernel") as dp:
        assert dp.fast == fast
        assert (dp.kernel is not None) == (request.param == "kernel")
        yield p, dp
    assert dp.error is None


@pytest.fixture(scope="module")
def hosts(topo: StarTopology, switch) -> Iterator[dict[int, HostPort]]:
    ports = {i: HostPort(topo.host_ns(i), topo.HOST_IF) for i in range(1, topo.hosts + 1)}
    yield ports
    for port in ports.values():
        port.close()


def to_vip(topo: StarTopology, sport: int, ttl: int = 64, payload: bytes = b"probe") -> bytes:
    return bytes(Ether(src=topo.host_mac(1), dst=topo.SWITCH_MAC)
                 / IP(src=topo.host_ip(1), dst=VIP, ttl=ttl)
                 / TCP(sport=sport, dport=5001, flags="A", seq=1, ack=1) / payload)


def fast_rx(dp: Dataplane) -> int:
    """Frames received that never reached Python (C and kernel fast paths)."""
    return sum(s.rx for s in dp.fastpath_stats().values()) + sum(s.rx for s in dp.kernel_stats().values())


def collect_sports(port: HostPort, first: int, end: int, quiet: float = 0.3) -> set[int]:
    """Source ports of probe frames (dport 5001, sport in [first, end)) until `quiet` s pass."""
    seen: set[int] = set()
    while port.expect(lambda p: TCP in p and p[TCP].dport == 5001 and first <= p[TCP].sport < end
                      and not seen.add(p[TCP].sport), timeout=quiet) is not None:
        pass
    return seen


def is_probe(sport: int) -> Callable[[Ether], bool]:
    return lambda p: TCP in p and p[TCP].sport == sport and p[TCP].dport == 5001


def valid_checksums(pkt: Ether) -> bool:
    again = pkt.copy()
    again[IP].chksum = None
    again[TCP].chksum = None
    again = Ether(bytes(again))
    return again[IP].chksum == pkt[IP].chksum and again[TCP].chksum == pkt[TCP].chksum


def test_forward_to_each_backend_with_dnat(topo, switch, hosts) -> None:
    p, _ = switch
    seen = set()
    for sport in range(41000, 41040):
        frame = to_vip(topo, sport)
        expected_port, expected = p.process(frame, 1)  # the same program, frame by frame
        hosts[1].send(frame)
        got = hosts[expected_port].expect(is_probe(sport))
        assert got is not None, f"probe {sport} did not reach port {expected_port}"
        assert bytes(got) == expected
        assert got[IP].dst == topo.host_ip(expected_port) and got[IP].ttl == 63
        assert got.dst == topo.host_mac(expected_port) and got.src == topo.SWITCH_MAC
        assert valid_checksums(got)
        seen.add(expected_port)
    assert seen == {2, 3}


@pytest.mark.parametrize("switch", ["ring"], indirect=True)   # the mode that writes pcaps
def test_pcap_per_port(topo, switch) -> None:
    from scapy.utils import rdpcap
    _, dp = switch
    assert dp.pcap_dir is not None
    dp.flush_pcaps()
    rx = [p for p in rdpcap(f"{dp.pcap_dir}/port1_in.pcap") if TCP in p and 41000 <= p[TCP].sport < 41040]
    tx = [p for i in (2, 3) for p in rdpcap(f"{dp.pcap_dir}/port{i}_out.pcap")
          if TCP in p and 41000 <= p[TCP].sport < 41040]
    assert len(rx) == 40 and len(tx) == 40
    assert all(p[IP].dst == VIP for p in rx) and all(p[IP].dst != VIP for p in tx)


def test_gso_segment_arithmetic() -> None:
    from p4cf_kit.switch.embedded.dataplane import GSO_NONE, GSO_TCPV4, gso_segments
    frame = bytes(Ether() / IP() / TCP(options=[("NOP", None)] * 12) / (b"d" * 10000))
    hdr = 14 + 20 + 32
    assert gso_segments(frame, GSO_TCPV4, 1448, 34) == (7, 10000 + 7 * hdr)
    assert gso_segments(frame, GSO_TCPV4, 20000, 34) == (1, len(frame))
    assert gso_segments(frame, GSO_NONE, 1448, 34) == (1, len(frame))


def test_return_path_snat(topo, hosts) -> None:
    reply = bytes(Ether(src=topo.host_mac(2), dst=topo.SWITCH_MAC)
                  / IP(src=topo.host_ip(2), dst=topo.host_ip(1), ttl=64)
                  / TCP(sport=5001, dport=42000, flags="A") / (b"r" * 200))
    hosts[2].send(reply)
    got = hosts[1].expect(lambda p: TCP in p and p[TCP].dport == 42000)
    assert got is not None
    assert got[IP].src == VIP and got[IP].dst == topo.host_ip(1) and got[IP].ttl == 63
    assert valid_checksums(got)


def test_drops_ttl_and_non_ipv4(topo, hosts) -> None:
    for port in hosts.values():
        port.drain()
    hosts[1].send(to_vip(topo, 43000, ttl=1))
    hosts[1].send(bytes(Ether(src=topo.host_mac(1), dst="ff:ff:ff:ff:ff:ff")
                        / ARP(psrc=topo.host_ip(1), pdst=VIP)))
    hosts[1].send(to_vip(topo, 43001, ttl=2))  # marker: forwarded, arrives after the others
    marker = None
    for i in (2, 3):
        marker = marker or hosts[i].expect(is_probe(43001), timeout=1.0)
    assert marker is not None and marker[IP].ttl == 1
    for i in (2, 3):
        assert hosts[i].expect(lambda p: ARP in p or (TCP in p and p[TCP].sport == 43000),
                               timeout=0.2) is None


def test_counters_exact(topo, switch, hosts) -> None:
    """Every frame twice: the first of a flow goes through Python (a fast path learns it), the
    second through the fast path; the counters see both, exactly."""
    p, dp = switch
    before = {sel: p.nhop_counter(sel) for sel in (1, 2)}
    sent = {1: [0, 0], 2: [0, 0]}
    for sport in range(44000, 44030):
        frame = to_vip(topo, sport, payload=b"z" * (sport % 17))
        port = p.process(frame, 1)[0]
        sent[port - 1][0] += 2
        sent[port - 1][1] += 2 * len(frame)
    for sel in (1, 2):  # process() above counted once; the switch counts the real frames again
        before[sel] = p.nhop_counter(sel)
    in_c = fast_rx(dp)
    for rnd in range(2):
        for sport in range(44000, 44030):
            hosts[1].send(to_vip(topo, sport, payload=b"z" * (sport % 17)))
        arrived = {sport: i for i in (2, 3) for sport in collect_sports(hosts[i], 44000, 44030)}
        assert len(arrived) == 30, rnd
    if dp.fast:  # the second round's probes (and the backends' RSTs to them) stayed in C or the kernel
        assert fast_rx(dp) - in_c >= 30
    for sel in (1, 2):
        packets, nbytes = p.nhop_counter(sel)
        assert (packets - before[sel][0], nbytes - before[sel][1]) == tuple(sent[sel])


def test_write_takes_effect_next_packet(topo, switch, hosts) -> None:
    """The flow crosses the switch (so a fast path has learnt it), one write, the next packet
    follows the new entry."""
    p, dp = switch
    frame = to_vip(topo, 45000)
    port = p.process(frame, 1)[0]
    in_c = fast_rx(dp)
    for _ in range(2):
        hosts[1].send(frame)
        assert hosts[port].expect(is_probe(45000)) is not None
    if dp.fast:  # the second one went through the learnt flow (so may the backend's RST)
        assert fast_rx(dp) - in_c >= 1
    other = 5 - port
    p.set_ecmp_nhop(port - 1, "set_nhop", {"nhop_dmac": macn(topo.host_mac(other)),
                                           "nhop_ipv4": ipn(topo.host_ip(other)), "port": other})
    try:
        hosts[1].send(frame)
        got = hosts[other].expect(is_probe(45000))
        assert got is not None and got[IP].dst == topo.host_ip(other)
    finally:
        program(p, topo)


SERVER = textwrap.dedent("""
    import hashlib, socket, sys
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 5001)); srv.listen(8)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        h = hashlib.sha256()
        while True:
            data = conn.recv(1 << 20)
            if not data:
                break
            h.update(data)
        conn.sendall(h.hexdigest().encode() + sys.argv[1].encode())
        conn.close()
""")

CLIENT = textwrap.dedent("""
    import hashlib, os, socket, sys
    data = os.urandom(int(sys.argv[2]))
    c = socket.create_connection((sys.argv[1], 5001), timeout=20)
    c.sendall(data); c.shutdown(socket.SHUT_WR)
    reply = b""
    while True:
        chunk = c.recv(4096)
        if not chunk:
            break
        reply += chunk
    print(hashlib.sha256(data).hexdigest(), reply.decode())
""")


@pytest.fixture(scope="module")
def servers(topo) -> Iterator[None]:
    procs = []
    try:
        for i in (2, 3):
            proc = popen_in(topo.host_ns(i), [sys.executable, "-c", SERVER, f"h{i}"],
                            stdout=subprocess.PIPE, text=True)
            procs.append(proc)
            assert proc.stdout.readline().strip() == "ready"
        yield
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=5)


def test_real_tcp_through_switch_with_offloads(topo, switch, servers) -> None:
    p, dp = switch
    features = run_in(topo.host_ns(1), ["ethtool", "-k", topo.HOST_IF]).stdout
    assert "tcp-segmentation-offload: on" in features and "tx-checksumming: on" in features
    rx_before = sum(s.rx for s in dp.stats().values())
    c_before = fast_rx(dp)
    counted_before = sum(p.nhop_counter(sel)[0] for sel in (0, 1, 2))
    backends = set()
    for _ in range(4):
        out = run_in(topo.host_ns(1), [sys.executable, "-c", CLIENT, VIP, str(8 << 20)], timeout=60)
        sent_hash, reply = out.stdout.split()
        assert reply[:64] == sent_hash  # every byte arrived intact
        backends.add(reply[64:])
    assert backends <= {"h2", "h3"}
    frames = sum(s.rx for s in dp.stats().values()) - rx_before
    segments = sum(p.nhop_counter(sel)[0] for sel in (0, 1, 2)) - counted_before
    print(f"{frames} frames, {segments} segments")
    if dp.fast:  # most never reached Python (only each direction's first packet does)
        in_c = fast_rx(dp) - c_before
        assert in_c >= frames - 4 * 2 * 2, (in_c, frames)
    assert segments > frames  # GSO super-frames crossed the switch and were counted per segment


MSS = 1448  # 1500-byte MTU less IPv4, TCP and timestamp option headers


def _retransmitted_segments(netns: str) -> int:
    """TCP RetransSegs of a namespace (each netns keeps its own /proc/net/snmp)."""
    lines = [line.split() for line in run_in(netns, ["cat", "/proc/net/snmp"]).stdout.splitlines()
             if line.startswith("Tcp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("RetransSegs")])


def test_gso_counters_match_segments_on_the_wire(topo, switch, servers) -> None:
    """Client -> backend bytes counted = TCP payload + 66 bytes (Ethernet, IPv4, TCP with
    timestamps) per segment, SYN options aside: exact per-segment accounting of GSO frames."""
    p, _ = switch
    before = [p.nhop_counter(sel) for sel in (1, 2)]
    retrans_before = _retransmitted_segments(topo.host_ns(1))
    size = 4 << 20
    run_in(topo.host_ns(1), [sys.executable, "-c", CLIENT, VIP, str(size)], timeout=60)
    retrans = _retransmitted_segments(topo.host_ns(1)) - retrans_before
    packets = sum(p.nhop_counter(sel)[0] - before[i][0] for i, sel in enumerate((1, 2)))
    nbytes = sum(p.nhop_counter(sel)[1] - before[i][1] for i, sel in enumerate((1, 2)))
    # Exact per-segment accounting leaves payload + 16 option bytes of the SYN, plus the payload
    # of each segment the client retransmitted (at most one MSS each; a loaded 2-core machine
    # drops some). Counting a GSO super-frame as one packet would leave 66 bytes per hidden
    # segment on top, far more than that bound when retransmissions are few.
    extra = nbytes - 66 * packets - size
    assert 0 <= extra <= 16 + retrans * MSS, (extra, retrans)


@pytest.mark.parametrize("switch", ["fast"], indirect=True)   # the generator is the switch's C module
def test_blast_generator_is_bounded(topo, switch) -> None:
    """The benchmark's sendmmsg generator: sends for the time asked, and not much longer."""
    from p4cf_kit.switch.embedded import _fastpath
    p, dp = switch
    port = HostPort(topo.host_ns(1), topo.HOST_IF)
    try:
        frame = to_vip(topo, 46000, ttl=1)  # dropped by the switch (TTL), never reaches a host
        start = time.monotonic()
        sent, errors = _fastpath.blast(port.sock.fileno(), frame, 0.2, 32)
        took = time.monotonic() - start
    finally:
        port.close()
    assert sent > 1000 and 0.2 <= took < 1.0, (sent, errors, took)
