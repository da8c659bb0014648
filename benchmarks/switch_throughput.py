"""TCP throughput and small-packet rate through the embedded switch vs. kernel routing.

Both run over the same kind of veths between kit-owned namespaces (p4cf-b-*): a client h1 and
a server h2 on either side of (a) the embedded data plane programmed with the LB entries
(client -> VIP, DNAT to h2) or (b) a namespace routing with ip_forward. Load generators are
Python programs in the host namespaces; each measurement runs for a fixed duration.

  TCP:  h1 sends 1 MiB buffers for D seconds; h2 reports bytes received / time (Gbit/s).
  pps:  h1 blasts 60-byte UDP frames (64 on the wire with FCS) from a packet socket for D
        seconds; the rate is h2's interface rx_packets delta / D.

Run as root: .venv/bin/python benchmarks/switch_throughput.py [--duration 5] [--rx both]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
import sys
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from p4cf_kit.netns import StarTopology, ip, popen_in, run_in  # noqa: E402
from p4cf_kit.switch.embedded.dataplane import Dataplane  # noqa: E402
from p4cf_kit.switch.embedded.pipeline import LoadBalancerPipeline  # noqa: E402

VIP = "10.0.0.100"
PORT = 5201

TCP_SERVER = textwrap.dedent("""
    import socket, sys, time
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", int(sys.argv[1]))); srv.listen(1)
    print("ready", flush=True)
    conn, _ = srv.accept()
    buf = bytearray(1 << 20); total = 0
    n = conn.recv_into(buf); t0 = time.monotonic(); t1 = t0
    while n:
        total += n; t1 = time.monotonic()
        n = conn.recv_into(buf)
    print(total, t1 - t0, flush=True)
""")

TCP_CLIENT = textwrap.dedent("""
    import socket, sys, time
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
    data = b"x" * (1 << 20); end = time.monotonic() + float(sys.argv[3])
    while time.monotonic() < end:
        c.sendall(data)
    c.close()
""")

PPS_SENDER = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.bind((sys.argv[1], 0))
    frame = bytes.fromhex(sys.argv[2]); end = time.monotonic() + float(sys.argv[3]); n = 0
    send = s.send
    while time.monotonic() < end:
        for _ in range(1000):
            try:
                send(frame)
            except OSError:
                pass
        n += 1000
    print(n, flush=True)
""")


def ipn(a: str) -> int:
    return int(ipaddress.IPv4Address(a))


def macb(m: str) -> bytes:
    return bytes.fromhex(m.replace(":", ""))


def udp_frame(dst_mac: str, src_mac: str, src: str, dst: str) -> bytes:
    """A 60-byte Ethernet/IPv4/UDP frame with a valid IPv4 checksum (UDP checksum 0)."""
    from p4cf_kit.switch.embedded.packet import ipv4_checksum
    payload = bytes(18)
    udp = (40000).to_bytes(2, "big") + (9).to_bytes(2, "big") + (8 + len(payload)).to_bytes(2, "big") + b"\0\0"
    hdr = bytearray(b"\x45\x00" + (20 + len(udp) + len(payload)).to_bytes(2, "big") + b"\0\0\0\0\x40\x11\0\0"
                    + ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed)
    hdr[10:12] = ipv4_checksum(hdr).to_bytes(2, "big")
    return macb(dst_mac) + macb(src_mac) + b"\x08\x00" + bytes(hdr) + udp + payload


def rx_packets(ns: str, ifname: str) -> int:
    data = json.loads(ip("-s", "-j", "link", "show", ifname, netns=ns).stdout)
    return data[0]["stats64"]["rx"]["packets"]


def measure_tcp(topo: StarTopology, dst: str, duration: float) -> float:
    server = popen_in(topo.host_ns(2), [sys.executable, "-c", TCP_SERVER, str(PORT)],
                      stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        run_in(topo.host_ns(1), [sys.executable, "-c", TCP_CLIENT, dst, str(PORT), str(duration)],
               timeout=duration + 30)
        total, secs = server.stdout.readline().split()
        server.wait(timeout=10)
        return int(total) * 8 / float(secs) / 1e9
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def measure_pps(topo: StarTopology, frame: bytes, duration: float) -> tuple[float, float]:
    """(received pps at h2, offered pps from h1).

    h2 drops the UDP frames at netdev ingress (nftables, after its interface counted them),
    so the measurement is forwarding, not h2's UDP stack answering with ICMP."""
    ns, dev = topo.host_ns(2), topo.HOST_IF
    run_in(ns, ["nft", "add", "table", "netdev", "p4cf"])
    run_in(ns, ["nft", "add", "chain", "netdev", "p4cf", "sink",
                f"{{ type filter hook ingress device {dev} priority 0; policy accept; }}"])
    run_in(ns, ["nft", "add", "rule", "netdev", "p4cf", "sink", "ip", "protocol", "udp", "drop"])
    before = rx_packets(topo.host_ns(2), topo.HOST_IF)
    out = run_in(topo.host_ns(1), [sys.executable, "-c", PPS_SENDER, topo.HOST_IF, frame.hex(),
                                   str(duration)], timeout=duration + 30)
    time.sleep(0.2)
    got = rx_packets(topo.host_ns(2), topo.HOST_IF) - before
    run_in(ns, ["nft", "delete", "table", "netdev", "p4cf"], check=False)
    return got / duration, int(out.stdout) / duration


def program(p: LoadBalancerPipeline, topo: StarTopology) -> None:
    p.set_ecmp_group(ipn(VIP), 32, "set_ecmp_select", {"ecmp_base": 1, "ecmp_count": 1})
    p.set_ecmp_group(ipn(topo.host_ip(1)) & 0xFFFFFF00, 24, "set_rewrite_src", {"new_src": ipn(VIP)})
    for i in (1, 2):
        p.set_ecmp_nhop(i - 1, "set_nhop", {"nhop_dmac": int(topo.host_mac(i).replace(":", ""), 16),
                                            "nhop_ipv4": ipn(topo.host_ip(i)), "port": i})
        p.set_send_frame(i, "rewrite_mac", {"smac": int(topo.SWITCH_MAC.replace(":", ""), 16)})


def run_kernel(tag: str, duration: float) -> dict[str, float]:
    with StarTopology(f"p4cf-b-{tag}k-", 2) as topo:
        ns = topo.switch_ns
        for i in (1, 2):
            ip("link", "set", topo.switch_if(i), "address", topo.SWITCH_MAC, netns=ns)
            ip("addr", "add", f"10.0.{i}.254/24", "dev", topo.switch_if(i), netns=ns)
            ip("neigh", "replace", topo.host_ip(i), "lladdr", topo.host_mac(i), "dev",
               topo.switch_if(i), "nud", "permanent", netns=ns)
        run_in(ns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        gbps = measure_tcp(topo, topo.host_ip(2), duration)
        frame = udp_frame(topo.SWITCH_MAC, topo.host_mac(1), topo.host_ip(1), topo.host_ip(2))
        pps, offered = measure_pps(topo, frame, duration)
    return {"tcp_gbps": gbps, "pps": pps, "offered_pps": offered}


def run_switch(tag: str, duration: float, rx_ring: bool) -> dict[str, float]:
    with StarTopology(f"p4cf-b-{tag}s-", 2) as topo:
        p = LoadBalancerPipeline()
        program(p, topo)
        with Dataplane(p, {1: topo.switch_if(1), 2: topo.switch_if(2)}, netns=topo.switch_ns,
                       rx_ring=rx_ring) as dp:
            cpu0, rx0 = dp.cpu_seconds, sum(s.rx for s in dp.stats().values())
            gbps = measure_tcp(topo, VIP, duration)
            cpu1, rx1 = dp.cpu_seconds, sum(s.rx for s in dp.stats().values())
            frame = udp_frame(topo.SWITCH_MAC, topo.host_mac(1), topo.host_ip(1), VIP)
            pps, offered = measure_pps(topo, frame, duration)
            time.sleep(0.6)
            cpu2, rx2 = dp.cpu_seconds, sum(s.rx for s in dp.stats().values())
            stats = {n: vars(s) for n, s in dp.stats().items()}
        if dp.error is not None:
            raise dp.error
    return {"tcp_gbps": gbps, "pps": pps, "offered_pps": offered, "port_stats": stats,
            "tcp_cpu": cpu1 - cpu0, "pps_cpu": cpu2 - cpu1, "pps_frames": rx2 - rx1,
            "tcp_capacity_gbps": gbps * duration / max(cpu1 - cpu0, 1e-9)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--rx", choices=["recv", "ring", "both"], default="both",
                        help="switch receive path(s) to measure")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root (creates network namespaces)", file=sys.stderr)
        return 2
    tag = f"{os.getpid() % 4096:03x}"
    kernel = run_kernel(tag, args.duration)
    print(f"kernel routing : TCP {kernel['tcp_gbps']:6.2f} Gbit/s   64B {kernel['pps'] / 1e3:7.1f} kpps"
          f" (offered {kernel['offered_pps'] / 1e3:.1f} kpps)", flush=True)
    modes = ["recv", "ring"] if args.rx == "both" else [args.rx]
    for mode in modes:
        sw = run_switch(tag, args.duration, mode == "ring")
        print(f"switch ({mode:4s})  : TCP {sw['tcp_gbps']:6.2f} Gbit/s   64B {sw['pps'] / 1e3:7.1f} kpps"
              f" (offered {sw['offered_pps'] / 1e3:.1f} kpps)", flush=True)
        print(f"  forwarding thread CPU: TCP {sw['tcp_cpu']:.2f} s of {args.duration:.0f} s"
              f" (=> {sw['tcp_capacity_gbps']:.2f} Gbit/s per busy core);"
              f" 64B {sw['pps_cpu'] / max(sw['pps_frames'], 1) * 1e6:.2f} us/frame"
              f" (=> {sw['pps_frames'] / max(sw['pps_cpu'], 1e-9) / 1e3:.0f} kpps per busy core)", flush=True)
        print(f"  ratio to kernel: TCP {sw['tcp_gbps'] / kernel['tcp_gbps']:.2f} (goal >= 0.75)   "
              f"pps {sw['pps'] / kernel['pps']:.2f}   pps goal >= 160 kpps: "
              f"{'met' if sw['pps'] >= 160e3 else 'NOT met'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
