"""The C fast path's flow table against the Python pipeline, frame by frame (no network).

For every frame the reference is a second, identically programmed pipeline run the way the
Python data plane runs it (`prepare_offloads` then `process_frame`); the fast path must give
the same egress, the same bytes, the same virtio_net_hdr to send with and the same counters.
The forwarding loop itself runs over real veths in test_dataplane.py.
"""

from __future__ import annotations

import random
import struct
import threading

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from frame_mutation import mutate
from p4cf_kit.switch.embedded import dataplane as dpm
from p4cf_kit.switch.embedded.pipeline import LoadBalancerPipeline

needs_fastpath = pytest.mark.skipif(not dpm.fastpath_available(),
                                    reason="C fast path not built (or P4CF_FASTPATH=0)")

VIP = 0x0A000064
NO_VNET = bytes(10)


def program(p: LoadBalancerPipeline) -> None:
    """The fuzz test's entries: ECMP on the VIP, SNAT for 10.0.1.0/24, a catch-all group with
    the widest base/count, a dropping nhop entry that still counts, a port without send_frame."""
    p.set_ecmp_group(VIP, 32, "set_ecmp_select", {"ecmp_base": 1, "ecmp_count": 3})
    p.set_ecmp_group(0x0A000100, 24, "set_rewrite_src", {"new_src": VIP})
    p.set_ecmp_group(0x0A000200, 24, "drop", {})
    p.set_ecmp_group(0, 0, "set_ecmp_select", {"ecmp_base": 0x3FFE, "ecmp_count": 0xFFFFFFFF})
    for sel in range(5):
        p.set_ecmp_nhop(sel, "set_nhop", {"nhop_dmac": 0x0200000000A0 + sel,
                                          "nhop_ipv4": 0x0A000A00 + sel, "port": sel % 4})
    p.set_ecmp_nhop(3, "drop", {})
    p.set_ecmp_nhop(0x3FFF, "set_nhop", {"nhop_dmac": 1, "nhop_ipv4": 1, "port": 511})
    for port in range(3):
        p.set_send_frame(port, "rewrite_mac", {"smac": 0x020000000001 + port})


def vnet(flags: int = 0, gso_type: int = 0, hdr_len: int = 0, gso_size: int = 0,
         start: int = 0, offset: int = 0) -> bytes:
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, start, offset)


PARTIAL_TCP = vnet(1, 0, 0, 0, 34, 16)
GSO_TCP = vnet(1, dpm.GSO_TCPV4, 66, 1448, 34, 16)
PARTIAL_UDP = vnet(1, 0, 0, 0, 34, 6)
DATA_VALID = vnet(2)


def frames() -> list[bytes]:
    """Frames that exercise every branch of the program and of the offload handling."""
    out = []
    for sport in range(40000, 40040):
        out.append(Ether() / IP(src="10.0.1.1", dst="10.0.0.100") / TCP(sport=sport, dport=5001)
                   / (b"p" * (sport % 7)))
    out += [
        Ether() / IP(src="10.0.3.1", dst="10.0.1.1", ttl=2) / TCP(sport=5001, dport=40000) / (b"r" * 1400),
        Ether() / IP(src="10.0.1.1", dst="10.0.0.100", ttl=1) / TCP(),
        Ether() / IP(src="10.0.1.1", dst="10.0.0.100", ttl=0) / TCP(),
        Ether() / IP(src="10.0.1.1", dst="10.0.2.9") / TCP(),           # group drop
        Ether() / IP(src="10.0.1.1", dst="192.0.2.1") / TCP() / b"x",    # catch-all, select 0x3FFE..
        Ether() / IP(dst="10.0.0.100") / UDP(sport=1234, dport=53) / b"q",
        Ether() / IP(dst="10.0.0.100") / ICMP() / (b"i" * 33),
        Ether() / IP(dst="10.0.0.100", options=[b"\x01" * 8]) / TCP() / b"opt",
        Ether() / IP(dst="10.0.0.100", frag=3, flags="MF") / TCP(),
        Ether() / IP(dst="10.0.0.100", ihl=15) / TCP(),
        Ether() / IP(dst="10.0.0.100", len=0) / TCP(dataofs=15, options=[("NOP", None)] * 8),
        Ether() / IP(dst="10.0.0.100", chksum=0x1234) / TCP(chksum=0xBEEF) / b"bad sums",
        Ether() / IP(version=6, dst="10.0.0.100") / TCP(),
        Ether() / Dot1Q(vlan=3) / IP(dst="10.0.0.100") / TCP(),
        Ether() / ARP(),
    ]
    raw = [bytes(p) for p in out]
    raw.append(raw[0][:44])                 # cut inside TCP: routed as plain IPv4
    raw.append(raw[0][:38])                 # shortest frame with a fast-path key
    raw.append(raw[0][:37])                 # too short for the key: always Python
    raw.append(raw[0] + b"\x00")            # odd length
    return raw


def reference(ref: LoadBalancerPipeline, v: bytes, frame: bytes) -> tuple[int, bytes, bytes] | None:
    """What the Python data plane does with (vnet, frame): (egress, vnet out, frame out)."""
    buf = bytearray(frame)
    v_out, partial, segs, nbytes = dpm.prepare_offloads(v, buf)
    out = ref.process_frame(buf, 1, nbytes, segs, partial)
    if out is None:
        return None
    return out[0], v_out, bytes(out[1])


def fast(table, p: LoadBalancerPipeline, v: bytes, frame: bytes) -> tuple[object, bytes, bytes]:
    """The fast path on (vnet, frame), learning from `p` on a miss like the data plane does."""
    vb, fb = bytearray(v), bytearray(frame)
    res = table.handle(vb, fb)
    if res is None:
        assert (vb, fb) == (bytearray(v), bytearray(frame))  # a punted frame is left untouched
        learnt = bytearray(frame)
        dpm.prepare_offloads(v, learnt)  # as Dataplane._handle: offloads first, then learn
        dpm.learn(table, None, p, learnt)
        res = table.handle(vb, fb)
    return res, bytes(vb), bytes(fb)


def test_env_switch_forces_python(monkeypatch) -> None:
    """P4CF_FASTPATH=0 turns the fast path off; asking for it then fails loudly."""
    monkeypatch.setenv("P4CF_FASTPATH", "0")
    assert not dpm.fastpath_available()
    dp = dpm.Dataplane(LoadBalancerPipeline(), {}, fastpath=True)
    with pytest.raises(RuntimeError, match="fast path"):
        dp.start()
    assert dp.fast is False and dp.error is None


@pytest.fixture
def pair() -> tuple[object, LoadBalancerPipeline, LoadBalancerPipeline]:
    from p4cf_kit.switch.embedded import _fastpath
    p, ref = LoadBalancerPipeline(), LoadBalancerPipeline()
    program(p)
    program(ref)
    table = _fastpath.FlowTable()
    p.attach_fastpath(table)
    return table, p, ref


def check(table, p, ref, v: bytes, frame: bytes) -> bool:
    """Compare one frame; True when the fast path handled it (False: left to Python)."""
    res, v_out, f_out = fast(table, p, v, frame)
    expected = reference(ref, v, frame)
    if res is None:
        # Only frames without a key, or whose checksum completion touches key bytes, stay in
        # Python; give them to Python so the counters stay comparable.
        short = len(frame) < dpm.MIN_KEY_FRAME
        completes_key = v[0] & 1 and struct.unpack("<H", v[6:8])[0] + struct.unpack("<H", v[8:10])[0] < 38
        assert short or completes_key, (v.hex(), frame.hex())
        buf = bytearray(frame)
        _, partial, segs, nbytes = dpm.prepare_offloads(v, buf)
        p.process_frame(buf, 1, nbytes, segs, partial)
        return False
    if expected is None:
        assert res == -1, (v.hex(), frame.hex())
    else:
        assert (res, v_out, f_out) == expected, (v.hex(), frame.hex())
    return True


def counters(p: LoadBalancerPipeline) -> dict[int, tuple[int, int]]:
    return {sel: p.nhop_counter(sel) for sel in (0, 1, 2, 3, 4, 0x3FFF)}


@needs_fastpath
def test_same_bytes_and_counters_as_python(pair) -> None:
    table, p, ref = pair
    handled = 0
    for _ in range(3):  # the second and third rounds run on learnt flows only
        for frame in frames():
            for v in (NO_VNET, PARTIAL_TCP, DATA_VALID, PARTIAL_UDP, GSO_TCP):
                handled += check(table, p, ref, v, frame)
    assert handled > 500
    assert counters(p) == counters(ref)
    assert sum(n for n, _ in counters(p).values()) > 100


@needs_fastpath
def test_gso_counts_segments(pair) -> None:
    table, p, ref = pair
    frame = bytes(Ether() / IP(src="10.0.1.1", dst="10.0.0.100") / TCP(sport=1, dport=2,
                  options=[("NOP", None)] * 12) / (b"d" * 10000))
    before = counters(ref)
    assert check(table, p, ref, GSO_TCP, frame)
    after = counters(ref)
    changed = [s for s in after if after[s] != before[s]]
    assert len(changed) == 1
    packets, nbytes = after[changed[0]][0] - before[changed[0]][0], after[changed[0]][1] - before[changed[0]][1]
    assert (packets, nbytes) == (7, 10000 + 7 * 66)
    assert counters(p) == after


@needs_fastpath
def test_write_takes_effect_on_next_packet(pair) -> None:
    table, p, ref = pair
    frame = next(f for f in (bytes(Ether() / IP(src="10.0.1.1", dst="10.0.0.100")
                                   / TCP(sport=s, dport=5001)) for s in range(40001, 40100))
                 if ref.process(f, 1) is not None)
    res, _, out = fast(table, p, NO_VNET, frame)
    assert res is not None and res >= 0
    assert table.handle(bytearray(NO_VNET), bytearray(frame)) == res  # learnt: no Python
    select = res  # VIP selects 1..2 forward to port select % 4 == select
    p.set_ecmp_nhop(select, "set_nhop", {"nhop_dmac": 0x0200000000EE, "nhop_ipv4": 0x0A0009009,
                                         "port": 2 if res != 2 else 1})
    assert table.handle(bytearray(NO_VNET), bytearray(frame)) is None  # the write invalidated it
    res2, _, out2 = fast(table, p, NO_VNET, frame)
    assert res2 == (2 if res != 2 else 1) and out2[0:6] == bytes.fromhex("0200000000ee")
    del out
    # counts gathered before the write stayed with the entry (a modify keeps its counter)
    assert p.nhop_counter(select)[0] == 3
    p.del_ecmp_nhop(select)
    p.set_ecmp_nhop(select, "set_nhop", {"nhop_dmac": 1, "nhop_ipv4": 1, "port": 0})
    assert p.nhop_counter(select) == (0, 0)  # a new entry starts from zero


@needs_fastpath
def test_stale_generation_refused(pair) -> None:
    table, p, _ = pair
    frame = bytes(Ether() / IP(src="10.0.1.1", dst="10.0.0.100") / TCP(sport=9, dport=9))
    key, d, generation = p.decision_for(frame)
    p.set_send_frame(3, "drop", {})  # any write
    assert not table.insert(key, generation, *dpm._decision_args(d))
    assert table.handle(bytearray(NO_VNET), bytearray(frame)) is None
    assert dpm.learn(table, None, p, frame)
    assert table.handle(bytearray(NO_VNET), bytearray(frame)) is not None


@needs_fastpath
def test_counter_write_and_read_merge(pair) -> None:
    table, p, _ = pair
    frame = bytes(Ether() / IP(src="10.0.3.1", dst="10.0.1.1") / TCP(sport=5001, dport=7))
    for _ in range(5):
        fast(table, p, NO_VNET, frame)
    assert p.nhop_counter(0) == (5, 5 * len(frame))
    p.set_nhop_counter(0, 100, 1000)
    fast(table, p, NO_VNET, frame)
    assert p.nhop_counter(0) == (101, 1000 + len(frame))


@needs_fastpath
def test_fuzz_never_crashes_and_matches(pair) -> None:
    """Mutated frames with random virtio_net_hdrs: no crash, and whatever the fast path
    handles is what Python does."""
    table, p, ref = pair
    rng = random.Random(31337)
    base = frames()
    for i in range(4000):
        frame = mutate(rng, base[i % len(base)])
        kind = rng.randrange(4)
        if kind == 0:
            v = NO_VNET
        elif kind == 1:
            v = rng.choice([PARTIAL_TCP, GSO_TCP, PARTIAL_UDP, DATA_VALID])
        else:
            v = vnet(rng.randrange(4), rng.choice([0, 1, 3, 4, 5, 0x81, 7]), rng.randrange(200),
                     rng.randrange(0, 3000), rng.randrange(0, 90), rng.randrange(0, 60))
        check(table, p, ref, v, frame)
        if i % 997 == 0:  # writes in between: everything learnt must be forgotten
            for q in (p, ref):
                q.set_ecmp_group(VIP, 32, "set_ecmp_select", {"ecmp_base": 1, "ecmp_count": 2 + i % 3})
    assert counters(p) == counters(ref)
    for _ in range(2000):  # raw garbage of any length, including empty and huge
        data = bytearray(rng.randbytes(rng.choice([0, 1, 13, 34, 37, 38, 54, 60, 1500, 70000])))
        table.handle(bytearray(rng.randbytes(10)), data)


@needs_fastpath
def test_counts_exact_under_concurrent_writes(pair) -> None:
    """One thread forwards a flow (fast path, Python on every miss) while another keeps moving
    its ecmp_nhop entry between ports: every packet is counted once, on that entry."""
    table, p, _ = pair
    frame = bytes(Ether() / IP(src="10.0.3.1", dst="10.0.1.1") / TCP(sport=5001, dport=8))
    n, in_c = 20000, 0
    done = threading.Event()

    def writer() -> None:
        port = 0
        while not done.is_set():
            port ^= 1
            p.set_ecmp_nhop(0, "set_nhop", {"nhop_dmac": 0x0200000000A0, "nhop_ipv4": 0x0A000A00,
                                            "port": port})

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(n):
            out = bytearray(frame)
            if table.handle(bytearray(NO_VNET), out) is not None:
                in_c += 1
                continue
            dpm.learn(table, None, p, out)
            p.process_frame(out, 1, len(out), 1, False)
    finally:
        done.set()
        thread.join()
    assert p.nhop_counter(0) == (n, n * len(frame))
    assert 0 < in_c < n  # both paths were taken
