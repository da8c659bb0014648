"""The eBPF kernel fast path: same bytes and counters as the program run in user space.

Real veths in kit-owned namespaces (p4cf-k-<tag>-*), real programs loaded through bpf(2) and
attached with tcx. Each frame is sent twice: the first goes through user space (which teaches
the kernel its flow), the second through the kernel where the program takes it; both must
leave as `LoadBalancerPipeline.process` says, byte for byte. Frames the kernel must not take
(a corrupt checksum, which the program recomputes) are checked to come back to user space.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

from p4cf_kit.errors import OffloadUnavailable
from p4cf_kit.netns import StarTopology, call_in_netns, run_in
from p4cf_kit.switch.embedded.dataplane import Dataplane
from p4cf_kit.switch.embedded.ebpf import asm
from p4cf_kit.switch.embedded.ebpf import syscall as bpf
from p4cf_kit.switch.embedded.pipeline import LoadBalancerPipeline
from packet_io import packet_socket, receive_matching

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

VIP = "10.0.0.100"
TAG = f"{os.getpid() % 4096:03x}"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ipn(a: str) -> int:
    return int(ipaddress.IPv4Address(a))


def macn(m: str) -> int:
    return int(m.replace(":", ""), 16)


def program(p: LoadBalancerPipeline, topo: StarTopology) -> None:
    p.set_ecmp_group(ipn(VIP), 32, "set_ecmp_select", {"ecmp_base": 1, "ecmp_count": 2})
    p.set_ecmp_group(ipn(topo.host_ip(1)) & 0xFFFFFF00, 24, "set_rewrite_src", {"new_src": ipn(VIP)})
    for i in (1, 2, 3):
        p.set_ecmp_nhop(i - 1, "set_nhop", {"nhop_dmac": macn(topo.host_mac(i)),
                                            "nhop_ipv4": ipn(topo.host_ip(i)), "port": i})
        p.set_send_frame(i, "rewrite_mac", {"smac": macn(topo.SWITCH_MAC)})


@pytest.fixture(scope="module")
def topo() -> Iterator[StarTopology]:
    with StarTopology(f"p4cf-k-{TAG}-", 4) as t:  # port 4 is left for a switch process
        yield t


@pytest.fixture(scope="module", params=["tcx", "tc"])
def switch(request, topo) -> Iterator[tuple[LoadBalancerPipeline, Dataplane]]:
    """The kernel path attached with a tcx link (Linux >= 6.6), and as a cls_bpf filter (how
    it runs on older kernels, forced here with P4CF_OFFLOAD_ATTACH)."""
    p = LoadBalancerPipeline()
    program(p, topo)
    ports = {i: topo.switch_if(i) for i in (1, 2, 3)}
    os.environ["P4CF_OFFLOAD_ATTACH"] = request.param
    try:
        with Dataplane(p, ports, netns=topo.switch_ns, offload=True) as dp:
            assert dp.kernel is not None and dp.kernel.attach_kind == request.param
            yield p, dp
    finally:
        del os.environ["P4CF_OFFLOAD_ATTACH"]
    assert dp.error is None
    assert _tc_filters(topo, 1) == "", "the cls_bpf filter outlived the switch"


@pytest.fixture(scope="module")
def socks(topo, switch) -> Iterator[dict[int, socket.socket]]:
    out = {}
    for i in (1, 2, 3):
        s = packet_socket(topo.host_ns(i), topo.HOST_IF)
        s.settimeout(0.05)
        out[i] = s
    yield out
    for s in out.values():
        s.close()


def receive(sock: socket.socket, match: Callable[[bytes], bool], timeout: float = 2.0) -> bytes | None:
    return receive_matching(sock, match, timeout)


def kernel_rx(dp: Dataplane, port: int = 1) -> int:
    """Frames the kernel path took in at `port` (the hosts' RSTs to probes come in elsewhere)."""
    return dp.kernel_stats()[port].rx


def frames(topo: StarTopology) -> dict[str, bytes]:
    """One frame per case the kernel path must get exactly right (sport identifies it)."""
    def to_vip(sport: int, payload: bytes, **ip: object) -> bytes:
        return bytes(Ether(src=topo.host_mac(1), dst=topo.SWITCH_MAC)
                     / IP(src=topo.host_ip(1), dst=VIP, **ip)
                     / TCP(sport=sport, dport=5001, flags="PA", seq=7, ack=9) / payload)
    return {
        "small": to_vip(47000, b"x"),
        "odd length": to_vip(47001, b"abc" * 7),
        "full size": to_vip(47002, os.urandom(1400)),
        "ttl 2": to_vip(47003, b"t", ttl=2),
        "DF set": to_vip(47004, b"d", flags="DF"),
        "options": bytes(Ether(src=topo.host_mac(1), dst=topo.SWITCH_MAC)
                         / IP(src=topo.host_ip(1), dst=VIP)
                         / TCP(sport=47005, dport=5001, flags="A", options=[("NOP", None)] * 4
                               + [("Timestamp", (1, 2))]) / b"o"),
        "return path": bytes(Ether(src=topo.host_mac(2), dst=topo.SWITCH_MAC)
                             / IP(src=topo.host_ip(2), dst=topo.host_ip(1))
                             / TCP(sport=5001, dport=47006, flags="A") / (b"r" * 333)),
        "udp": bytes(Ether(src=topo.host_mac(1), dst=topo.SWITCH_MAC)
                     / IP(src=topo.host_ip(1), dst=VIP) / UDP(sport=47007, dport=5001) / (b"u" * 18)),
    }


def flow(topo: StarTopology, case: str, sport: int) -> bytes:
    """Frame `case` of `frames`, moved to its own flow (source port `sport`), checksums valid."""
    pkt = Ether(frames(topo)[case])
    pkt[TCP].sport = sport
    return _with_checksums(bytes(pkt))


def ports_of(frame: bytes) -> bytes:
    return frame[34:38]


def test_kernel_path_emits_the_programs_bytes(topo, switch, socks) -> None:
    p, dp = switch
    for name, frame in frames(topo).items():
        egress, expected = p.process(frame, 1)
        ingress = 2 if name == "return path" else 1
        before = kernel_rx(dp, ingress)
        for copy in ("user space", "kernel"):
            socks[ingress].send(frame)
            got = receive(socks[egress], lambda d, f=frame: ports_of(d) == ports_of(f))
            assert got == expected, f"{name}: {copy} copy differs"
        assert kernel_rx(dp, ingress) - before == 1, f"{name}: the second copy did not stay in the kernel"


def test_corrupt_tcp_checksum_goes_to_user_space(topo, switch, socks) -> None:
    """The program recomputes the TCP checksum, so a corrupt one leaves corrected: only user
    space does that, so the kernel must hand such frames up, not update them incrementally."""
    p, dp = switch
    good = Ether(flow(topo, "small", 47100))
    bad = good.copy()
    bad[TCP].chksum ^= 0x1234
    egress, expected = p.process(bytes(good), 1)
    taken = []
    for frame in (bytes(good), bytes(good), bytes(bad)):  # learnt, kernel, then the bad one
        before = kernel_rx(dp)
        socks[1].send(frame)
        assert receive(socks[egress], lambda d, f=frame: ports_of(d) == ports_of(f)) == expected
        taken.append(kernel_rx(dp) - before)
    assert taken == [0, 1, 0]  # the good copy went through the kernel, the bad one did not


def test_corrupt_header_checksum_goes_to_user_space(topo, switch, socks) -> None:
    p, dp = switch
    good = Ether(flow(topo, "small", 47101))
    egress, expected = p.process(bytes(good), 1)
    socks[1].send(bytes(good))
    assert receive(socks[egress], lambda d: ports_of(d) == ports_of(bytes(good))) == expected
    bad = bytearray(bytes(good))
    bad[24] ^= 0x55
    before = kernel_rx(dp)
    socks[1].send(bytes(bad))
    assert receive(socks[egress], lambda d: ports_of(d) == ports_of(bytes(good))) == p.process(bytes(bad), 1)[1]
    assert kernel_rx(dp) == before


def test_counters_see_kernel_frames(topo, switch, socks) -> None:
    p, dp = switch
    frame = flow(topo, "full size", 47200)
    egress, _ = p.process(frame, 1)
    before = p.nhop_counter(egress - 1)
    for _ in range(5):
        socks[1].send(frame)
        assert receive(socks[egress], lambda d, f=frame: ports_of(d) == ports_of(f)) is not None
    assert p.nhop_counter(egress - 1) == (before[0] + 5, before[1] + 5 * len(frame))


def test_non_ipv4_counted_as_dropped_by_the_kernel(topo, switch, socks) -> None:
    _, dp = switch
    before = dp.kernel_stats()[1]
    socks[1].send(bytes(Ether(src=topo.host_mac(1), dst="ff:ff:ff:ff:ff:ff")
                        / ARP(psrc=topo.host_ip(1), pdst=VIP)))
    deadline = time.monotonic() + 2
    while dp.kernel_stats()[1].dropped == before.dropped and time.monotonic() < deadline:
        time.sleep(0.02)
    after = dp.kernel_stats()[1]
    assert (after.rx - before.rx, after.dropped - before.dropped) == (1, 1)


def test_write_takes_effect_on_the_next_kernel_frame(topo, switch, socks) -> None:
    p, dp = switch
    frame = flow(topo, "small", 47300)
    egress, _ = p.process(frame, 1)
    for _ in range(2):
        socks[1].send(frame)
        assert receive(socks[egress], lambda d: ports_of(d) == ports_of(frame)) is not None
    other = 5 - egress
    p.set_ecmp_nhop(egress - 1, "set_nhop", {"nhop_dmac": macn(topo.host_mac(other)),
                                             "nhop_ipv4": ipn(topo.host_ip(other)), "port": other})
    try:
        socks[1].send(frame)
        got = receive(socks[other], lambda d: ports_of(d) == ports_of(frame))
        assert got is not None and got[30:34] == socket.inet_aton(topo.host_ip(other))
    finally:
        program(p, topo)


def test_a_backend_write_leaves_other_backends_flows_in_the_kernel(topo, switch, socks) -> None:
    """MODIFY of ecmp_nhop[s] (a migration's switch update) sends back to user space only the
    flows whose decision looked up entry s; the other backend's flows stay in the kernel."""
    p, dp = switch
    by_port: dict[int, bytes] = {}
    for sport in range(47500, 47600):
        frame = flow(topo, "small", sport)
        by_port.setdefault(p.process(frame, 1)[0], frame)
        if len(by_port) == 2:
            break
    for port, frame in by_port.items():  # learnt, then once through the kernel
        for _ in range(2):
            socks[1].send(frame)
            assert receive(socks[port], lambda d, f=frame: ports_of(d) == ports_of(f)) is not None
    moved, kept = sorted(by_port)
    p.set_ecmp_nhop(moved - 1, "set_nhop", {"nhop_dmac": macn(topo.host_mac(moved)),
                                            "nhop_ipv4": ipn(topo.host_ip(moved)), "port": moved})
    for port, in_kernel in ((kept, 1), (moved, 0)):
        before = kernel_rx(dp)
        frame = by_port[port]
        socks[1].send(frame)
        assert receive(socks[port], lambda d, f=frame: ports_of(d) == ports_of(f)) is not None
        assert kernel_rx(dp) - before == in_kernel, f"port {port}"


def test_offload_refused_with_pcap_says_why(topo, tmp_path) -> None:
    dp = Dataplane(LoadBalancerPipeline(), {1: topo.switch_if(1)}, netns=topo.switch_ns,
                   pcap_dir=str(tmp_path), offload=True)
    with pytest.raises(OffloadUnavailable, match="pcap"):
        dp.start()


def test_switched_off_by_environment(topo, monkeypatch) -> None:
    monkeypatch.setenv("P4CF_OFFLOAD", "0")
    with Dataplane(LoadBalancerPipeline(), {1: topo.switch_if(1)}, netns=topo.switch_ns) as dp:
        assert dp.kernel is None and dp.offload_error == "P4CF_OFFLOAD=0"


def test_auto_falls_back_to_user_space_and_says_why(topo, monkeypatch) -> None:
    """When the kernel path cannot load, the default (offload=None) forwards in user space and
    keeps the reason; insisting (offload=True) fails with it."""
    monkeypatch.setenv("P4CF_OFFLOAD_ATTACH", "neither")
    with Dataplane(LoadBalancerPipeline(), {1: topo.switch_if(1)}, netns=topo.switch_ns) as dp:
        assert dp.kernel is None and "P4CF_OFFLOAD_ATTACH" in dp.offload_error
    with pytest.raises(OffloadUnavailable, match="P4CF_OFFLOAD_ATTACH"):
        Dataplane(LoadBalancerPipeline(), {1: topo.switch_if(1)}, netns=topo.switch_ns, offload=True).start()


def _tc_filters(topo: StarTopology, port: int) -> str:
    return run_in(topo.switch_ns, ["tc", "filter", "show", "dev", topo.switch_if(port), "ingress"]).stdout.strip()


def _programs_on(topo: StarTopology, port: int) -> int:
    ifindex = call_in_netns(topo.switch_ns, lambda: socket.if_nametoindex(topo.switch_if(port)))
    return call_in_netns(topo.switch_ns, lambda: bpf.tcx_ingress_count(ifindex))


def test_programs_detach_when_the_switch_dies(topo) -> None:
    """A killed switch (no clean-up at all) leaves no program on its ports: tcx links die with
    the process's file descriptors."""
    assert _programs_on(topo, 4) == 0
    proc = _switch_process(topo, 4, "tcx")
    try:
        assert _programs_on(topo, 4) == 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while _programs_on(topo, 4) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _programs_on(topo, 4) == 0


def _switch_process(topo: StarTopology, port: int, attach: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", topo.switch_ns, sys.executable, "-m", "p4cf_kit.switch.embedded",
         "-i", f"{port}@{topo.switch_if(port)}", "--grpc-server-addr", "127.0.0.1:0",
         "--datapath", "ebpf", "--control-cpu", "none"],
        cwd=ROOT, stderr=subprocess.PIPE, text=True, env={**os.environ, "P4CF_OFFLOAD_ATTACH": attach})
    banner = proc.stderr.readline()
    assert "eBPF" in banner, banner
    return proc


def test_a_killed_cls_bpf_switch_is_cleaned_up_by_the_next(topo) -> None:
    """A cls_bpf filter outlives its process (unlike a tcx link): the next switch on the port
    replaces it, and a clean stop removes it and the qdisc the kit created."""
    proc = _switch_process(topo, 4, "tc")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert "p4cf_lb_p4" in _tc_filters(topo, 4)  # left behind by the kill
    proc = _switch_process(topo, 4, "tc")
    try:
        assert _tc_filters(topo, 4).count("handle 0x4cf") == 1  # replaced, not doubled
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert _tc_filters(topo, 4) == ""
    qdiscs = run_in(topo.switch_ns, ["tc", "qdisc", "show", "dev", topo.switch_if(4)]).stdout
    assert "clsact" in qdiscs  # the killed switch created it; the second one found it there


def test_assembler_resolves_labels_and_rejects_bad_ones() -> None:
    p = asm.Program()
    p.jump_if(asm.R1, "==", 0, "end")
    p.mov(asm.R0, 1)
    p.label("end")
    p.exit()
    code = p.link()
    assert len(code) == 3 * 8
    assert code[2:4] == (1).to_bytes(2, "little")  # skips one instruction
    bad = asm.Program()
    bad.goto("nowhere")
    with pytest.raises(ValueError, match="nowhere"):
        bad.link()
    with pytest.raises(ValueError, match="twice"):
        p.label("end")


def test_verifier_refusal_carries_its_log() -> None:
    p = asm.Program()
    p.exit()  # r0 never set: the verifier refuses
    with pytest.raises(bpf.BpfError) as info:
        bpf.prog_load(bpf.PROG_SCHED_CLS, p.link(), "p4cf_test_bad")
    assert "R0" in info.value.log


def _with_checksums(frame: bytes) -> bytes:
    pkt = Ether(frame)
    del pkt[IP].chksum
    if TCP in pkt:
        del pkt[TCP].chksum
    return bytes(pkt)


def test_fuzz_kernel_and_user_paths_agree(topo, switch, socks) -> None:
    """Variants of one learnt flow's frame (its key bytes kept, everything else mutated, with
    checksums made valid half of the time): whichever path takes each one, what leaves is what
    the program emits for it, byte for byte."""
    import random
    p, dp = switch
    rng = random.Random(20261128)
    base = flow(topo, "full size", 47400)
    egress, expected = p.process(base, 1)
    socks[1].send(base)
    assert receive(socks[egress], lambda d: ports_of(d) == ports_of(base)) == expected
    before, sent = kernel_rx(dp), 0
    for _ in range(300):
        data = bytearray(base)
        kind = rng.randrange(5)
        if kind == 0:    # payload bytes
            for _ in range(rng.randrange(1, 8)):
                data[rng.randrange(54, len(data))] = rng.randrange(256)
        elif kind == 1:  # IPv4 fields outside the key: TOS, id, flags, TTL
            for off in rng.sample([15, 18, 19, 20, 21, 22], rng.randrange(1, 4)):
                data[off] = rng.randrange(256)
        elif kind == 2:  # TCP header outside the ports
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(38, 54)] = rng.randrange(256)
        elif kind == 3:  # cut or padded
            data = (data[:rng.randrange(54, len(data))] if rng.randrange(2)
                    else data + rng.randbytes(rng.randrange(1, 40)))
        else:            # total length
            data[16:18] = rng.randrange(40, 1600).to_bytes(2, "big")
        frame = bytes(data)
        if rng.randrange(2):
            try:
                fixed = _with_checksums(frame)
            except Exception:  # scapy refuses some garbage: send it as it is
                fixed = frame
            if len(fixed) == len(frame) and fixed[26:38] == frame[26:38]:
                frame = fixed
        out = p.process(frame, 1)
        if out is None or out[0] != egress:
            continue  # dropped by the program: nothing to compare (and nothing waits)
        socks[1].send(frame)
        got = receive(socks[egress], lambda d, f=frame: ports_of(d) == ports_of(f))
        assert got == out[1], f"variant {frame.hex()} left differently"
        sent += 1
    taken = kernel_rx(dp) - before
    print(f"{sent} variants compared, {taken} through the kernel")
    assert sent > 150 and 0 < taken < sent
