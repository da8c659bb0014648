"""TCP throughput and small-packet rate through the embedded switch vs. kernel routing.

All run over the same kind of veths between kit-owned namespaces (p4cf-b-*), in one run, with
the same load generators: a client h1 and a server h2 on either side of (a) a namespace routing
with ip_forward (the baseline), (b) the embedded switch as it runs by default: its eBPF kernel
fast path in front of the C one, (c) the C fast path alone, (d) the pure-Python path, (e) with
`--paths ...,bmv2`, BMv2's simple_switch_grpc (the program compiled by p4c, programmed over
P4Runtime by the kit's controller; offloads off on its own topology's veths, as BMv2 needs
complete frames and the kit's wiring does in a lab). Each measurement runs for a fixed duration; with
--repeat N every case is measured N times, interleaved, and the median is reported.

  TCP:  h1 sends 1 MiB buffers for D seconds (kernel TCP, offloads on); h2 reports bytes
        received / time (Gbit/s).
  pps:  h1 sends the same 60-byte UDP frame (64 on the wire with FCS) from a packet socket for
        D seconds with the fast path's sendmmsg generator (`_fastpath.blast`, C; a Python loop
        if the extension is not built); the rate is h2's interface rx_packets delta / D. h2
        drops the frames at netdev ingress (nftables). Printed "offered" is what the generator
        got out: with kernel routing the whole path (router, h2) runs inside its send calls,
        so offered == received there; through the switch the generator and the forwarding
        thread each need a core, so on a 2-core machine busy with other jobs both get less.
  CPU:  the forwarding thread's CPU time per 64-byte frame (and so its capacity per busy core)
        is printed too: unlike the rates it hardly depends on what else the machine runs.

Run as root: .venv/bin/python benchmarks/switch_throughput.py [--duration 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from p4cf_kit.netns import StarTopology, ip, popen_in, run_in  # noqa: E402
from p4cf_kit.switch.embedded.dataplane import Dataplane, fastpath_available  # noqa: E402
from p4cf_kit.switch.embedded.pipeline import LoadBalancerPipeline  # noqa: E402

VIP = "10.0.0.100"
PORT = 5201
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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
    s.setsockopt(263, 20, 1)  # PACKET_QDISC_BYPASS, as the switch's own sockets
    s.bind((sys.argv[1], 0))
    frame = bytes.fromhex(sys.argv[2]); seconds = float(sys.argv[3])
    try:
        from p4cf_kit.switch.embedded import _fastpath
    except ImportError:
        _fastpath = None
    if _fastpath is not None:
        sent, _ = _fastpath.blast(s.fileno(), frame, seconds, 64)
        print(sent, "c", flush=True)
        sys.exit(0)
    end = time.monotonic() + seconds; n = 0
    send = s.send
    while time.monotonic() < end:
        for _ in range(1000):
            try:
                send(frame)
            except OSError:
                pass
        n += 1000
    print(n, "python", flush=True)
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


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + fields[4]            # idle + iowait
    return sum(fields) - idle, sum(fields)


def measure_tcp(topo: StarTopology, dst: str, duration: float) -> tuple[float, float]:
    """(Gbit/s, fraction of the machine's CPUs busy meanwhile): a busy fraction near 1 says the
    rate is bounded by CPU (sender, receiver and forwarding share the cores), not by the path."""
    server = popen_in(topo.host_ns(2), [sys.executable, "-c", TCP_SERVER, str(PORT)],
                      stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        busy0, total0 = cpu_times()
        run_in(topo.host_ns(1), [sys.executable, "-c", TCP_CLIENT, dst, str(PORT), str(duration)],
               timeout=duration + 30)
        busy1, total1 = cpu_times()
        total, secs = server.stdout.readline().split()
        server.wait(timeout=10)
        return int(total) * 8 / float(secs) / 1e9, (busy1 - busy0) / max(total1 - total0, 1)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def measure_pps(topo: StarTopology, frame: bytes, duration: float) -> tuple[float, float, str]:
    """(received pps at h2, offered pps from h1, generator kind).

    h2 drops the UDP frames at netdev ingress (nftables, after its interface counted them),
    so the measurement is forwarding, not h2's UDP stack answering with ICMP."""
    ns, dev = topo.host_ns(2), topo.HOST_IF
    run_in(ns, ["nft", "add", "table", "netdev", "p4cf"])
    run_in(ns, ["nft", "add", "chain", "netdev", "p4cf", "sink",
                f"{{ type filter hook ingress device {dev} priority 0; policy accept; }}"])
    run_in(ns, ["nft", "add", "rule", "netdev", "p4cf", "sink", "ip", "protocol", "udp", "drop"])
    before = rx_packets(topo.host_ns(2), topo.HOST_IF)
    env = {**os.environ, "PYTHONPATH": ROOT}  # the generator imports the kit's extension
    out = run_in(topo.host_ns(1), [sys.executable, "-c", PPS_SENDER, topo.HOST_IF, frame.hex(),
                                   str(duration)], timeout=duration + 30, env=env)
    time.sleep(0.2)
    got = rx_packets(topo.host_ns(2), topo.HOST_IF) - before
    run_in(ns, ["nft", "delete", "table", "netdev", "p4cf"], check=False)
    sent, kind = out.stdout.split()
    return got / duration, int(sent) / duration, kind


def program(p: LoadBalancerPipeline, topo: StarTopology) -> None:
    p.set_ecmp_group(ipn(VIP), 32, "set_ecmp_select", {"ecmp_base": 1, "ecmp_count": 1})
    p.set_ecmp_group(ipn(topo.host_ip(1)) & 0xFFFFFF00, 24, "set_rewrite_src", {"new_src": ipn(VIP)})
    for i in (1, 2):
        p.set_ecmp_nhop(i - 1, "set_nhop", {"nhop_dmac": int(topo.host_mac(i).replace(":", ""), 16),
                                            "nhop_ipv4": ipn(topo.host_ip(i)), "port": i})
        p.set_send_frame(i, "rewrite_mac", {"smac": int(topo.SWITCH_MAC.replace(":", ""), 16)})


def kernel_topology(tag: str) -> StarTopology:
    """h1 - router namespace - h2, the router forwarding with the kernel's IPv4 routing."""
    topo = StarTopology(f"p4cf-b-{tag}k-", 2).up()
    ns = topo.switch_ns
    for i in (1, 2):
        ip("link", "set", topo.switch_if(i), "address", topo.SWITCH_MAC, netns=ns)
        ip("addr", "add", f"10.0.{i}.254/24", "dev", topo.switch_if(i), netns=ns)
        ip("neigh", "replace", topo.host_ip(i), "lladdr", topo.host_mac(i), "dev",
           topo.switch_if(i), "nud", "permanent", netns=ns)
    run_in(ns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
    return topo


def measure_kernel(topo: StarTopology, duration: float) -> dict[str, float | str]:
    gbps, busy = measure_tcp(topo, topo.host_ip(2), duration)
    frame = udp_frame(topo.SWITCH_MAC, topo.host_mac(1), topo.host_ip(1), topo.host_ip(2))
    pps, offered, gen = measure_pps(topo, frame, duration)
    return {"tcp_gbps": gbps, "tcp_busy": busy, "pps": pps, "offered_pps": offered, "generator": gen}


def measure_switch(topo: StarTopology, duration: float, fast: bool,
                   rx_ring: bool = False, offload: bool = False) -> dict[str, object]:
    """One measurement through a fresh embedded switch (kernel + C, C or Python path)."""
    p = LoadBalancerPipeline()
    program(p, topo)
    with Dataplane(p, {1: topo.switch_if(1), 2: topo.switch_if(2)}, netns=topo.switch_ns,
                   rx_ring=rx_ring, fastpath=fast, offload=offload) as dp:
        def in_kernel() -> int:
            return sum(s.rx for s in dp.kernel_stats().values())
        cpu0, rx0, k0 = dp.cpu_seconds, sum(s.rx for s in dp.stats().values()), in_kernel()
        gbps, busy = measure_tcp(topo, VIP, duration)
        time.sleep(0.6)  # cpu_seconds is updated at least every 0.5 s
        cpu1, rx1, k1 = dp.cpu_seconds, sum(s.rx for s in dp.stats().values()), in_kernel()
        frame = udp_frame(topo.SWITCH_MAC, topo.host_mac(1), topo.host_ip(1), VIP)
        pps, offered, gen = measure_pps(topo, frame, duration)
        time.sleep(0.6)
        cpu2, rx2, k2 = dp.cpu_seconds, sum(s.rx for s in dp.stats().values()), in_kernel()
        stats = {n: vars(s) for n, s in dp.stats().items()}
    if dp.error is not None:
        raise dp.error
    return {"tcp_gbps": gbps, "tcp_busy": busy, "pps": pps, "offered_pps": offered, "generator": gen,
            "port_stats": stats, "tcp_cpu": cpu1 - cpu0, "tcp_frames": rx1 - rx0,
            "pps_cpu": cpu2 - cpu1, "pps_frames": rx2 - rx1,
            "tcp_kernel_frames": k1 - k0, "pps_kernel_frames": k2 - k1}


def bmv2_topology(tag: str) -> StarTopology:
    """h1 - BMv2's namespace - h2, every veth end with the offloads off (BMv2 forwards frames as
    they are: no GSO super-frames, no partial checksums)."""
    from p4cf_kit.topology.wiring import OFFLOADS
    topo = StarTopology(f"p4cf-b-{tag}m-", 2).up()
    for i in (1, 2):
        run_in(topo.host_ns(i), ["ethtool", "-K", topo.HOST_IF, *OFFLOADS])
        run_in(topo.switch_ns, ["ethtool", "-K", topo.switch_if(i), *OFFLOADS])
    return topo


def measure_bmv2(topo: StarTopology, duration: float) -> dict[str, object]:
    """One measurement through a fresh BMv2 in the topology's switch netns, LB installed over P4Runtime."""
    import tempfile

    from p4cf_kit.control.connection import SwitchConnection
    from p4cf_kit.control.loadbalancer import LoadBalancer, NextHop
    from p4cf_kit.switch.targets import get_target
    target = get_target("bmv2")
    state = tempfile.mkdtemp(prefix="p4cf-b-bmv2-")
    ports = {i: topo.switch_if(i) for i in (1, 2)}
    addr = f"unix:{state}/p4rt.sock"
    sw = target.start(Path(state), ports, addr, 1, f"/run/netns/{topo.switch_ns}", timeout=30)
    try:
        files = target.pipeline()
        with SwitchConnection(addr, 1, p4info=files.p4info, device_config=files.device_config).connect(
                push_pipeline=True, timeout=20) as conn:
            hop = {i: NextHop(topo.host_mac(i), topo.host_ip(i), i) for i in (1, 2)}
            LoadBalancer(conn).install(VIP, f"{topo.host_ip(1)}/24", hop[1], [hop[2]],
                                       {i: topo.SWITCH_MAC for i in ports})
            t0 = cpu_of(sw.pid)
            gbps, busy = measure_tcp(topo, VIP, duration)
            t1 = cpu_of(sw.pid)
            frame = udp_frame(topo.SWITCH_MAC, topo.host_mac(1), topo.host_ip(1), VIP)
            pps, offered, gen = measure_pps(topo, frame, duration)
            t2 = cpu_of(sw.pid)
    finally:
        target.stop(Path(state))
        import shutil
        shutil.rmtree(state, ignore_errors=True)
    return {"tcp_gbps": gbps, "tcp_busy": busy, "pps": pps, "offered_pps": offered, "generator": gen,
            "tcp_cpu": t1 - t0, "pps_cpu": t2 - t1, "pps_frames": pps * duration}


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used, all its threads."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


NAMES = {"ebpf": "switch (eBPF+C)", "fast": "switch (C)", "fast-ring": "switch (C ring)", "python": "switch (Python)",
         "ring": "switch (Py ring)", "bmv2": "BMv2"}


def median(runs: list[dict], key: str) -> float:
    return statistics.median(float(r[key]) for r in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per case (median)")
    parser.add_argument("--paths", default="ebpf,fast,python",
                        help="switch paths to measure, comma-separated: ebpf (the default: "
                             "eBPF at tc ingress, then C), fast (C, recvmmsg), "
                             "fast-ring (C, TPACKET_V2 ring), python (recv), ring (Python, "
                             "TPACKET_V3 ring), bmv2 (BMv2 simple_switch_grpc, where installed)")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--nice", type=int, default=0,
                        help="scheduling niceness for the benchmark and everything it starts "
                             "(e.g. -10 on a machine shared with other jobs; every case gets it)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root (creates network namespaces)", file=sys.stderr)
        return 2
    if not 0 < args.duration <= 120 or not 1 <= args.repeat <= 20:
        print("--duration must be in (0, 120], --repeat in 1..20", file=sys.stderr)
        return 2
    paths = [x for x in args.paths.split(",") if x]
    unknown = set(paths) - set(NAMES)
    if unknown:
        print(f"unknown paths {sorted(unknown)}; choose from {sorted(NAMES)}", file=sys.stderr)
        return 2
    if "bmv2" in paths:
        from p4cf_kit.switch.targets import get_target
        why = get_target("bmv2").unavailable()
        if why:
            print(f"bmv2: {why}", file=sys.stderr)
            return 2
    if not fastpath_available() and any(x.startswith("fast") or x == "ebpf" for x in paths):
        print("C fast path not built (or P4CF_FASTPATH=0): measuring the Python paths only",
              file=sys.stderr)
        paths = [x for x in paths if not x.startswith("fast") and x != "ebpf"]
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, max(-20, min(19, args.nice)))  # children inherit it
    tag = f"{os.getpid() % 4096:03x}"
    results: dict[str, list[dict]] = {"kernel": [], **{x: [] for x in paths}}
    ktopo = kernel_topology(tag)
    stopo = StarTopology(f"p4cf-b-{tag}s-", 2)
    btopo = None
    try:
        stopo.up()
        if "bmv2" in paths:
            btopo = bmv2_topology(tag)
        for rnd in range(args.repeat):  # interleaved, so slow drifts hit every case alike
            results["kernel"].append(measure_kernel(ktopo, args.duration))
            for path in paths:
                if path == "bmv2":
                    results[path].append(measure_bmv2(btopo, args.duration))
                    continue
                results[path].append(measure_switch(stopo, args.duration,
                                                    fast=path.startswith("fast") or path == "ebpf",
                                                    rx_ring=path.endswith("ring"),
                                                    offload=path == "ebpf"))
            print(f"round {rnd + 1}/{args.repeat}: " + "  ".join(
                f"{k} {v[-1]['tcp_gbps']:.2f} Gbit/s {v[-1]['pps'] / 1e3:.0f} kpps"
                for k, v in results.items()), file=sys.stderr, flush=True)
    finally:
        if btopo is not None:
            btopo.down()
        stopo.down()
        ktopo.down()
    k_gbps, k_pps = median(results["kernel"], "tcp_gbps"), median(results["kernel"], "pps")
    gen = results["kernel"][0]["generator"]
    print(f"64-byte generator: {'C sendmmsg (_fastpath.blast)' if gen == 'c' else 'Python send()'};"
          f" {args.repeat} x {args.duration:g} s per case, medians; load average"
          f" {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; nice {args.nice}")
    print(f"kernel routing : TCP {k_gbps:6.2f} Gbit/s   64B {k_pps / 1e3:7.1f} kpps"
          f" (offered {median(results['kernel'], 'offered_pps') / 1e3:.0f} kpps)"
          f"   CPUs busy during TCP {100 * median(results['kernel'], 'tcp_busy'):.0f}%")
    for path in paths:
        runs = results[path]
        gbps, pps = median(runs, "tcp_gbps"), median(runs, "pps")
        # ratios paired round by round (same minute, same background load), then the median
        tcp_ratio = statistics.median(r["tcp_gbps"] / k["tcp_gbps"] for r, k in zip(runs, results["kernel"]))
        pps_ratio = statistics.median(r["pps"] / k["pps"] for r, k in zip(runs, results["kernel"]))
        print(f"{NAMES[path]:15s}: TCP {gbps:6.2f} Gbit/s   64B {pps / 1e3:7.1f} kpps"
              f" (offered {median(runs, 'offered_pps') / 1e3:.0f} kpps)"
              f"   CPUs busy during TCP {100 * median(runs, 'tcp_busy'):.0f}%")
        us = statistics.median(r["pps_cpu"] / max(r["pps_frames"], 1) for r in runs) * 1e6
        tcp_cpu = statistics.median(r["tcp_cpu"] / max(r["tcp_gbps"] * args.duration, 1e-9) for r in runs)
        if path == "ebpf":  # the user-space thread only sees each flow's first frame
            share = {k: statistics.median(r[f"{k}_kernel_frames"] / max(r[f"{k}_frames"], 1) for r in runs)
                     for k in ("tcp", "pps")}
            print(f"  frames forwarded in the kernel: TCP {100 * share['tcp']:.2f}%"
                  f"   64B {100 * share['pps']:.2f}%")
        elif path == "bmv2":
            print(f"  simple_switch_grpc CPU (all threads): 64B {us:.2f} us/frame; TCP {tcp_cpu:.2f} core-s per Gbit")
        else:
            print(f"  forwarding thread CPU: 64B {us:.2f} us/frame (=> {1 / max(us, 1e-9) * 1e3:.0f}"
                  f" kpps per busy core); TCP {tcp_cpu:.2f} core-s per Gbit")
        if path == "bmv2":  # the reference switch: no goal of its own, compared below
            print(f"  ratio to kernel (paired median): TCP {tcp_ratio:.3f}   64B {pps_ratio:.3f}")
            continue
        print(f"  ratio to kernel (paired median): TCP {tcp_ratio:.2f} (goal >= 0.75)"
              f"   64B {pps_ratio:.2f}   64B goal >= 160 kpps: {'met' if pps >= 160e3 else 'NOT met'}")
    if "bmv2" in paths:
        for path in (x for x in paths if x != "bmv2"):
            tcp_x = statistics.median(r["tcp_gbps"] / max(b["tcp_gbps"], 1e-9)
                                      for r, b in zip(results[path], results["bmv2"]))
            pps_x = statistics.median(r["pps"] / max(b["pps"], 1e-9) for r, b in zip(results[path], results["bmv2"]))
            goal = f" (goal >= 10: {'met' if tcp_x >= 10 else 'NOT met'})" if path == "ebpf" else ""
            print(f"{NAMES[path]} / BMv2 (paired median): TCP {tcp_x:.1f}x{goal}   64B {pps_x:.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
