"""`EmbeddedSwitch`: the switch process (P4Runtime server + program + ports) and its CLI.

Options follow simple_switch_grpc where they make sense (`--device-id`, `-i PORT@IFACE`,
`--grpc-server-addr`, `--log-console`, `--pcap`), so the kit can start either target the same
way. `--control-plane-only` runs P4Runtime without the program; without ports (`-i`, `--pcap`)
the program runs but nothing forwards frames.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from p4.v1 import p4runtime_pb2

from p4cf_kit.errors import OffloadUnavailable, P4RuntimeError, SwitchError
from p4cf_kit.switch.embedded.cpu_affinity import avoid_cpu, control_plane_cpu, pin_to_cpu
from p4cf_kit.switch.embedded.dataplane import Dataplane
from p4cf_kit.switch.embedded.p4info import load_p4info
from p4cf_kit.switch.embedded.pipeline import LoadBalancerPipeline
from p4cf_kit.switch.embedded.server import P4RuntimeService, start_server
from p4cf_kit.switch.state import SwitchState, clear_state, write_state

log = logging.getLogger("p4cf.switch")
DEFAULT_GRPC_ADDR = "127.0.0.1:9559"
DATAPATHS: dict[str, bool | None] = {"auto": None, "ebpf": True, "user": False}  # -> Dataplane(offload=)
LOG_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
              "warn": logging.WARNING, "error": logging.ERROR, "off": logging.CRITICAL + 10}


def is_loopback(address: str) -> bool:
    """True when a gRPC address is reachable from this host only (loopback or a unix socket)."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_port(spec: str) -> tuple[int, str]:
    """`PORT@IFACE` (as simple_switch's -i) -> (port, iface)."""
    port, sep, iface = spec.partition("@")
    if not sep or not port.isdigit() or not iface:
        raise argparse.ArgumentTypeError(f"expected PORT@IFACE (e.g. 1@veth1), got {spec!r}")
    if not 0 <= int(port) < 511:
        raise argparse.ArgumentTypeError(f"port {port} is not in 0..510 (511 is the drop port)")
    return int(port), iface


class EmbeddedSwitch:
    """One switch: a P4Runtime server for `device_id`, the program, and its ports.

    `control_cpu`: keep the control plane (gRPC and the Python threads serving it) on that CPU
    and the data plane thread on the others (why: `cpu_affinity`). `start()` pins the calling
    thread, so this is for a switch that owns its process (the CLI's default); None leaves
    thread placement alone.
    """

    def __init__(self, device_id: int = 1, grpc_addr: str = DEFAULT_GRPC_ADDR,
                 ports: dict[int, str] | None = None, pcap_dir: str | Path | None = None,
                 p4info_path: str | Path | None = None, pipeline: LoadBalancerPipeline | None = None,
                 allow_remote: bool = False, control_plane_only: bool = False,
                 control_cpu: int | None = None, datapath: str = "auto") -> None:
        if datapath not in DATAPATHS:
            raise SwitchError(f"unknown datapath {datapath!r}; choose one of {', '.join(DATAPATHS)}")
        if not allow_remote and not is_loopback(grpc_addr):
            raise SwitchError(f"{grpc_addr} is not a loopback address; pass allow_remote "
                              "(--allow-remote) to listen on other interfaces")
        self.device_id = device_id
        self.grpc_addr = grpc_addr
        self.ports = dict(ports or {})
        self.pcap_dir = Path(pcap_dir) if pcap_dir else None
        self.pipeline: LoadBalancerPipeline | None = None
        if not control_plane_only:
            self.pipeline = pipeline if pipeline is not None else LoadBalancerPipeline()
        self.service = P4RuntimeService(device_id, self.pipeline)
        self.p4info_path = Path(p4info_path) if p4info_path else None
        self.control_cpu = control_cpu
        self.datapath = datapath
        self.dataplane: Dataplane | None = None
        self._server: Any | None = None
        self.port: int | None = None
        self._stopped = threading.Event()

    def start(self) -> int:
        """Preload the pipeline if asked, open the ports, start gRPC; returns the gRPC port."""
        if self.p4info_path is not None:
            config = p4runtime_pb2.ForwardingPipelineConfig()
            config.p4info.CopyFrom(load_p4info(self.p4info_path))
            try:
                self.service.load_pipeline(config)
            except P4RuntimeError as exc:
                raise SwitchError(f"{self.p4info_path}: {exc.message}") from None
        if self.ports or self.pcap_dir:
            if self.control_cpu is not None:
                avoid_cpu(self.control_cpu)
            self._start_dataplane()
        if self.control_cpu is not None:
            pin_to_cpu(self.control_cpu)
            log.info("control plane on CPU %d", self.control_cpu)
        try:
            self._server, self.port = start_server(self.service, self.grpc_addr)
        except (OSError, RuntimeError) as exc:
            self._stop_dataplane()
            raise SwitchError(f"cannot serve P4Runtime on {self.grpc_addr}: {exc}; "
                              "is another switch running there?") from exc
        return self.port

    def _start_dataplane(self) -> None:
        if self.pipeline is None:
            raise SwitchError("ports (-i/--pcap) need the program, but --control-plane-only was given; "
                              "drop one of them")
        dataplane = Dataplane(self.pipeline, self.ports,
                              pcap_dir=str(self.pcap_dir) if self.pcap_dir else None,
                              offload=DATAPATHS[self.datapath])
        try:
            dataplane.start()
        except OffloadUnavailable as exc:  # insisted on (--datapath ebpf) but cannot load
            raise SwitchError(f"cannot use the eBPF fast path: {exc}; run with --datapath auto "
                              "(falls back to user space) or --datapath user") from exc
        except OSError as exc:
            names = ", ".join(f"{p}@{i}" for p, i in sorted(self.ports.items()))
            raise SwitchError(f"cannot open the switch ports ({names}): {exc}; check that the "
                              "interfaces exist in this network namespace and that you are root") from exc
        self.dataplane = dataplane

    def datapath_in_use(self) -> str:
        """What forwards frames, in words (for the log and `p4cf switch`'s banner)."""
        if self.pipeline is None:
            return "off (control plane only)"
        dp = self.dataplane
        if dp is None:
            return "off (no ports)"
        if dp.kernel is not None:
            how = "a tcx link" if dp.kernel.attach_kind == "tcx" else "a cls_bpf filter"
            return f"eBPF at tc ingress ({how}), user space for each flow's first frame"
        why = dp.offload_error
        return "user space" + (f" (eBPF fast path not used: {why})" if why else "")

    def _stop_dataplane(self) -> None:
        if self.dataplane is not None:
            self.dataplane.stop()
            self.dataplane = None

    def stop(self, grace: float = 1.0) -> None:
        """Stop gRPC (streams end), then close the ports. Idempotent."""
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        self._stop_dataplane()
        self._stopped.set()

    def wait(self) -> None:
        self._stopped.wait()

    def __enter__(self) -> EmbeddedSwitch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- command line ---------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The switch's options, shared by `p4cf switch` and `python -m p4cf_kit.switch.embedded`."""
    parser.add_argument("--device-id", type=int, default=1, help="P4Runtime device id (default 1)")
    parser.add_argument("-i", "--interface", dest="interfaces", action="append", default=[],
                        type=parse_port, metavar="PORT@IFACE",
                        help="attach switch port PORT to interface IFACE (repeatable)")
    parser.add_argument("--grpc-server-addr", default=DEFAULT_GRPC_ADDR,
                        help=f"gRPC listen address (default {DEFAULT_GRPC_ADDR})")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a non-loopback --grpc-server-addr")
    parser.add_argument("--p4info", type=Path, metavar="FILE",
                        help="preload this P4Info (text format) as the forwarding pipeline")
    parser.add_argument("--pcap", type=Path, metavar="DIR",
                        help="write one pcap per port and direction into DIR")
    parser.add_argument("--control-plane-only", action="store_true",
                        help="run P4Runtime without the program's data plane (no ports)")
    parser.add_argument("--control-cpu", default="auto", metavar="auto|none|CPU",
                        help="keep P4Runtime (gRPC and its Python threads) on one CPU and the "
                             "data plane on the others: fewer cross-CPU hand-offs per call "
                             "(default auto: the highest allowed CPU, if there are two or more)")
    parser.add_argument("--datapath", choices=list(DATAPATHS), default="auto",
                        help="ebpf: established flows are forwarded by an eBPF program at each "
                             "port's tc ingress, the rest in user space (needs root; a tcx link on "
                             "Linux >= 6.6, else a cls_bpf filter); user: every frame in user space; "
                             "auto (default): ebpf where it loads, else user")
    parser.add_argument("--log-level", choices=sorted(LOG_LEVELS), default="info")
    parser.add_argument("--log-console", action="store_true", help="log to the console (stderr)")
    parser.add_argument("--log-file", type=Path, help="log to this file")
    parser.add_argument("--state-file", type=Path, metavar="FILE",
                        help="once serving, write pid, P4Runtime address and data path to FILE "
                             "(JSON; the kit reads a lab's switch.json); removed at exit")


def run(args: argparse.Namespace) -> int:
    """Run the switch until SIGTERM/SIGINT; returns the exit status."""
    _configure_logging(args)
    ports: dict[int, str] = {}
    for port, iface in args.interfaces:
        if port in ports:
            raise SwitchError(f"port {port} is given twice (-i {port}@{ports[port]}, -i {port}@{iface})")
        ports[port] = iface
    switch = EmbeddedSwitch(device_id=args.device_id, grpc_addr=args.grpc_server_addr,
                            ports=ports, pcap_dir=args.pcap, p4info_path=args.p4info,
                            allow_remote=args.allow_remote,
                            control_plane_only=args.control_plane_only,
                            control_cpu=control_plane_cpu(args.control_cpu,
                                                          os.sched_getaffinity(0)),
                            datapath=args.datapath)
    port = switch.start()
    log.info("embedded switch: device %d, P4Runtime on port %d, ports %s, data plane %s",
             args.device_id, port, ports or "none", switch.datapath_in_use())
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"p4cf switch: device {args.device_id} listening on {args.grpc_server_addr};"
          f" data plane {switch.datapath_in_use()}", file=sys.stderr, flush=True)
    if args.state_file is not None:
        write_state(args.state_file, SwitchState(target="embedded", pid=os.getpid(),
                                                 grpc_addr=args.grpc_server_addr,
                                                 data_path=switch.datapath_in_use()))
    status = 0
    try:
        while not stop.wait(0.5):
            error = switch.dataplane.error if switch.dataplane is not None else None
            if error is not None:  # the forwarding thread died: a switch without it is no switch
                log.error("data plane failed: %r; stopping", error)
                status = 1
                break
    finally:
        switch.stop()
        if args.state_file is not None:
            clear_state(args.state_file, os.getpid())
    return status


def _configure_logging(args: argparse.Namespace) -> None:
    root = logging.getLogger("p4cf")
    root.setLevel(LOG_LEVELS[args.log_level])
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = []
    if args.log_console:
        handlers.append(logging.StreamHandler(sys.stderr))
    if args.log_file:
        handlers.append(logging.FileHandler(args.log_file))
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m p4cf_kit.switch.embedded",
                                     description="The kit's embedded P4Runtime switch.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except SwitchError as exc:
        print(f"embedded switch: error: {exc}", file=sys.stderr)
        return 1
