"""Round trip of one P4Runtime Write (MODIFY of an ecmp_nhop entry, the migration's switch update).

The embedded switch runs as its own process (`python -m p4cf_kit.switch.embedded`) on a free
loopback port, as in an experiment. On one gRPC channel we time, interleaved:
  - baseline: a Capabilities RPC (the cheapest unary call: gRPC + Python, no switch work),
  - write:    a Write with one MODIFY of ecmp_nhop[1] (raw stub),
  - shell:    the same MODIFY through p4runtime-shell's TableEntry.modify() (what the kit calls).
Goal: write median <= 1 ms.

    .venv/bin/python benchmarks/p4runtime_write.py [--iterations 2000] [--in-process] [--strict]
                                                   [--control-cpu auto|none|CPU]

Most of a write's round trip is not the switch: the Capabilities baseline is the gRPC floor. With
the pure-Python protobuf of protobuf 3.20.3 on Python 3.11, parsing the WriteRequest used to cost
more than the rest of the server's work; the switch now decodes it itself (`write_wire.parse_write`,
printed as "server decode", next to what protobuf's parser takes). The client still serialises
with protobuf. `--control-cpu` is passed to the switch (its default: `auto`, gRPC kept on one
CPU); `none` measures it unpinned.

As root, the switch runs as in a lab: with two ports on veths in a kit-owned namespace
(p4cf-b-*), its data plane on the default path (the eBPF fast path where it loads, whose
generation every write bumps and whose counters every write collects), P4Runtime on a unix
socket. `--no-ports` measures the control plane alone.

`--target bmv2` measures BMv2's simple_switch_grpc the same way (as root: in a kit namespace,
where the kit runs it, with the two ports unless --no-ports; the pipeline p4c compiled pushed
first), so its numbers sit beside the embedded switch's from another run of this script.
"""

from __future__ import annotations

import argparse
import os
import queue
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc
from google.protobuf.internal import api_implementation
from p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from p4cf_kit.paths import P4INFO_TXT  # noqa: E402
from p4cf_kit.switch.embedded.p4info import P4Schema, load_p4info  # noqa: E402

GOAL_MS = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nhop_modify(schema: P4Schema, port: int) -> p4runtime_pb2.WriteRequest:
    req = p4runtime_pb2.WriteRequest(device_id=1)
    req.election_id.low = 1
    u = req.updates.add(type=p4runtime_pb2.Update.MODIFY)
    te = u.entity.table_entry
    te.table_id = schema.table_by_name("MyIngress.ecmp_nhop").id
    te.match.add(field_id=1).exact.value = b"\x01"
    te.action.action.action_id = schema.action_by_name("MyIngress.set_nhop").id
    te.action.action.params.add(param_id=1, value=bytes.fromhex("0a0000000101"))
    te.action.action.params.add(param_id=2, value=bytes([10, 0, 0, port]))
    te.action.action.params.add(param_id=3, value=bytes([port]))
    return req


def local_costs(schema: P4Schema, n: int = 3000) -> dict[str, float]:
    """Per-write costs without gRPC (us): the client's serialise, the server's decode of the
    bytes (and what protobuf's parser would take), and the rest of the server's Write."""
    from p4cf_kit.switch.embedded.arbitration import Controller
    from p4cf_kit.switch.embedded.pipeline import LoadBalancerPipeline
    from p4cf_kit.switch.embedded.server import P4RuntimeService
    from p4cf_kit.switch.embedded.write_wire import parse_write

    service = P4RuntimeService(1, LoadBalancerPipeline())
    config = p4runtime_pb2.ForwardingPipelineConfig()
    config.p4info.CopyFrom(schema.p4info)
    service.load_pipeline(config)
    arb = p4runtime_pb2.MasterArbitrationUpdate(device_id=1)
    arb.election_id.low = 1
    service.arbiter.arbitrate(Controller(send=lambda _reply: None), arb)
    insert = nhop_modify(schema, 2)
    insert.updates[0].type = p4runtime_pb2.Update.INSERT
    service.Write(insert, None)
    reqs = [nhop_modify(schema, 2 + i % 2) for i in range(2)]
    datas = [r.SerializeToString() for r in reqs]
    t0 = time.perf_counter()
    for i in range(n):
        reqs[i % 2].SerializeToString()
    t1 = time.perf_counter()
    for i in range(n):
        parse_write(datas[i % 2])
    t2 = time.perf_counter()
    for i in range(n):
        p4runtime_pb2.WriteRequest.FromString(datas[i % 2])
    t3 = time.perf_counter()
    for i in range(n):
        service.write_wire(datas[i % 2], None)
    t4 = time.perf_counter()
    us = [(t - t_prev) / n * 1e6 for t_prev, t in ((t0, t1), (t1, t2), (t2, t3), (t3, t4))]
    return {"serialise": us[0], "decode": us[1], "protobuf parse": us[2],
            "handler": us[3] - us[1]}


def summary(name: str, samples_ns: list[int]) -> tuple[float, float]:
    ms = sorted(s / 1e6 for s in samples_ns)
    median = statistics.median(ms)
    p95 = ms[int(0.95 * (len(ms) - 1))]
    print(f"  {name:<34} median {median * 1000:7.1f} us   p95 {p95 * 1000:7.1f} us   (n={len(ms)})")
    return median, p95


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 when the write median misses the goal")
    ap.add_argument("--in-process", action="store_true",
                    help="run the switch in this process (shares the GIL with the client)")
    ap.add_argument("--control-cpu", default="auto", metavar="auto|none|CPU",
                    help="the switch's --control-cpu (not with --in-process)")
    ap.add_argument("--no-ports", action="store_true",
                    help="no data plane (the default as root: two ports, as in a lab)")
    ap.add_argument("--target", choices=("embedded", "bmv2"), default="embedded",
                    help="the switch to measure (bmv2: simple_switch_grpc, needs root)")
    args = ap.parse_args()
    if args.target == "bmv2" and (os.geteuid() != 0 or args.in_process):
        print("--target bmv2 needs root (BMv2 runs in a kit namespace) and no --in-process", file=sys.stderr)
        return 2

    schema = P4Schema(load_p4info(P4INFO_TXT))
    port = free_port()
    addr = f"127.0.0.1:{port}"
    proc = None
    switch = None
    topo = None
    wrap: list[str] = []
    ports: list[str] = []
    bmv2_state = None
    if (not args.no_ports or args.target == "bmv2") and not args.in_process and os.geteuid() == 0:
        from p4cf_kit.netns import StarTopology
        topo = StarTopology(f"p4cf-b-{os.getpid() % 4096:03x}w-", 2).up()
        wrap = ["ip", "netns", "exec", topo.switch_ns]
        if not args.no_ports:
            ports = [a for i in (1, 2) for a in ("-i", f"{i}@{topo.switch_if(i)}")]
        addr = f"unix:/run/{topo.prefix}grpc.sock"
    if args.target == "bmv2":
        import tempfile

        from p4cf_kit.switch.targets import get_target
        assert topo is not None
        bmv2_state = Path(tempfile.mkdtemp(prefix="p4cf-b-bmv2-"))
        sw_ports = {} if args.no_ports else {i: topo.switch_if(i) for i in (1, 2)}
        try:
            get_target("bmv2").start(bmv2_state, sw_ports, addr, 1, f"/run/netns/{topo.switch_ns}", timeout=30)
        except BaseException:
            topo.down()
            raise
        banner = "BMv2 simple_switch_grpc" + ("" if sw_ports else " (no ports)")
    elif args.in_process:
        from p4cf_kit.switch.embedded.target import EmbeddedSwitch
        switch = EmbeddedSwitch(grpc_addr=addr, p4info_path=P4INFO_TXT)
        switch.start()
    else:
        proc = subprocess.Popen([*wrap, sys.executable, "-m", "p4cf_kit.switch.embedded",
                                 "--grpc-server-addr", addr, "--p4info", str(P4INFO_TXT),
                                 "--log-level", "warn", "--control-cpu", args.control_cpu,
                                 *ports],
                                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                stderr=subprocess.PIPE, text=True)
        banner = proc.stderr.readline().strip()  # says which data path runs
    channel = grpc.insecure_channel(addr)
    try:
        grpc.channel_ready_future(channel).result(timeout=20)
        stub = p4runtime_pb2_grpc.P4RuntimeStub(channel)
        out: queue.Queue = queue.Queue()
        stream = stub.StreamChannel(iter(out.get, None))
        arb = p4runtime_pb2.StreamMessageRequest()
        arb.arbitration.device_id = 1
        arb.arbitration.election_id.low = 1
        out.put(arb)
        assert next(stream).arbitration.status.code == 0, "not primary"
        if args.target == "bmv2":  # BMv2 starts without a program: push p4c's JSON and P4Info
            from p4cf_kit.switch.targets import get_target
            files = get_target("bmv2").pipeline()
            cfg = p4runtime_pb2.SetForwardingPipelineConfigRequest(
                device_id=1, action=p4runtime_pb2.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT)
            cfg.election_id.low = 1
            cfg.config.p4info.CopyFrom(load_p4info(files.p4info))
            cfg.config.p4_device_config = files.device_config_bytes()
            stub.SetForwardingPipelineConfig(cfg)

        insert = nhop_modify(schema, 2)
        insert.updates[0].type = p4runtime_pb2.Update.INSERT
        stub.Write(insert)
        writes = [nhop_modify(schema, 2 + i % 2) for i in range(2)]
        caps = p4runtime_pb2.CapabilitiesRequest()

        base_ns: list[int] = []
        write_ns: list[int] = []
        for i in range(args.warmup + args.iterations):
            t0 = time.perf_counter_ns()
            stub.Capabilities(caps)
            t1 = time.perf_counter_ns()
            stub.Write(writes[i % 2])
            t2 = time.perf_counter_ns()
            if i >= args.warmup:
                base_ns.append(t1 - t0)
                write_ns.append(t2 - t1)

        out.put(None)
        stream.cancel()

        import p4runtime_sh.shell as sh
        sh.setup(device_id=1, grpc_addr=addr, election_id=(0, 1), verbose=False)
        shell_ns: list[int] = []
        try:
            entries = []
            for p in (2, 3):
                te = sh.TableEntry("MyIngress.ecmp_nhop")(action="MyIngress.set_nhop")
                te.match["meta.ecmp_select"] = "1"
                te.action["nhop_dmac"] = "0a:00:00:00:01:01"
                te.action["nhop_ipv4"] = f"10.0.0.{p}"
                te.action["port"] = str(p)
                entries.append(te)
            n = max(200, args.iterations // 4)
            for i in range(args.warmup + n):
                t0 = time.perf_counter_ns()
                entries[i % 2].modify()
                if i >= args.warmup:
                    shell_ns.append(time.perf_counter_ns() - t0)
        finally:
            sh.teardown()

        mode = ("in-process" if args.in_process else "BMv2 simple_switch_grpc" if args.target == "bmv2"
                else f"switch in its own process, --control-cpu {args.control_cpu}")
        where = "a unix socket" if addr.startswith("unix:") else "loopback"
        print(f"P4Runtime Write round trip over gRPC on {where} ({mode}, python {sys.version.split()[0]}, "
              f"grpcio {grpc.__version__})")
        if proc is not None or bmv2_state is not None:
            print(f"  switch: {banner.split('; ', 1)[-1] if ports else 'no ports (control plane only)'}")
        b_med, b_p95 = summary("baseline: Capabilities", base_ns)
        w_med, w_p95 = summary("write: MODIFY ecmp_nhop (raw stub)", write_ns)
        s_med, _ = summary("shell: TableEntry.modify()", shell_ns)
        print(f"  ratio write/baseline: median {w_med / b_med:.2f}x   p95 {w_p95 / b_p95:.2f}x")
        verdict = "meets" if w_med <= GOAL_MS else "MISSES"
        print(f"  goal: write median <= {GOAL_MS:.1f} ms -> {verdict} ({w_med:.3f} ms)")
        costs = local_costs(schema) if args.target == "embedded" else None  # the embedded server's parts
        if costs is not None:
            print(f"  where a write's time goes: client serialise {costs['serialise']:.0f} us, server "
                  f"decode {costs['decode']:.0f} us (protobuf's parser: {costs['protobuf parse']:.0f} us), "
                  f"server handler {costs['handler']:.0f} us (protobuf: {api_implementation.Type()})")
        return 1 if args.strict and w_med > GOAL_MS else 0
    finally:
        channel.close()
        if switch is not None:
            switch.stop(grace=0)
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        if bmv2_state is not None:
            from p4cf_kit.switch.targets import get_target
            get_target("bmv2").stop(bmv2_state)
            import shutil
            shutil.rmtree(bmv2_state, ignore_errors=True)
        if topo is not None:
            topo.down()
            Path(addr[len("unix:"):]).unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(main())
