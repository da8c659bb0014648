"""The simple_switch_grpc command line for the kit's port map, as a host binary or in an image.

Why here and not in the lab: the options follow BMv2's own parser (bm_sim/options_parse.cpp and
targets/simple_switch_grpc/main.cpp), whose rules are easy to trip over, so they are checked
before anything starts: `--log-console` and `--log-file` exclude each other, `--pcap` takes its
directory only in the `--pcap=DIR` form (the directory must exist), the JSON is positional and
must come before `--`, and target options (`--grpc-server-addr`, `--cpu-port`) come after `--`.
Without a JSON the switch starts with `--no-p4` and gets its pipeline over P4Runtime
(SetForwardingPipelineConfig with the JSON as p4_device_config), as the kit's controller does.

In an image, the container joins the switch's network: the host's (`--network host`) or the
kit's switch netns (`--network ns:/run/netns/...`), `--privileged` so BMv2 may open the veths
in promiscuous mode. Files (JSON, pcap folder, log file, a unix gRPC socket) are bind-mounted at
the same path, so the switch's arguments are the same in both variants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from p4cf_kit.switch.bmv2.toolchain import Tool

LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "off")
DROP_PORT = 511
IFNAMSIZ = 15


@dataclass(frozen=True)
class Bmv2Options:
    """What one simple_switch_grpc should be: ports, P4Runtime address, logs, captures, network."""

    ports: Mapping[int, str]
    grpc_addr: str
    device_id: int = 1
    json: Path | None = None  # None: --no-p4 (the controller pushes the pipeline)
    log_console: bool = True
    log_file: Path | None = None
    log_level: str = "warn"  # BMv2's default is trace, which slows every packet down
    pcap_dir: Path | None = None
    thrift_port: int | None = None  # only for builds with Thrift (the p4lang image has it)
    cpu_port: int | None = None  # packet-in/out; the load balancer uses none
    netns_path: str | None = None  # run in this netns (nsenter / --network ns:)
    container_name: str | None = None  # image variant only
    labels: Sequence[str] = field(default_factory=tuple)  # image variant: `--label` values

    def validate(self) -> None:
        """ValueError naming the option when BMv2 would refuse (or misread) the command."""
        for port, iface in self.ports.items():
            if not 0 <= port < DROP_PORT:
                raise ValueError(f"port {port} is not in 0..{DROP_PORT - 1} ({DROP_PORT} is BMv2's drop port)")
            if not iface or len(iface) > IFNAMSIZ or "@" in iface or "/" in iface or " " in iface:
                raise ValueError(f"port {port}: {iface!r} is not a Linux interface name")
        if len(set(self.ports.values())) != len(self.ports):
            raise ValueError(f"an interface is attached twice: {dict(self.ports)}")
        if self.log_console and self.log_file is not None:
            raise ValueError("simple_switch_grpc refuses --log-console together with --log-file; choose one")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log level {self.log_level!r}: use one of {', '.join(LOG_LEVELS)}")
        if self.device_id < 0:
            raise ValueError(f"device id {self.device_id} is negative")
        if not self.grpc_addr:
            raise ValueError("a gRPC address is needed (HOST:PORT or unix:/path)")
        if self.cpu_port is not None:
            if not 0 < self.cpu_port < DROP_PORT:
                raise ValueError(f"cpu port {self.cpu_port} is not in 1..{DROP_PORT - 1}")
            if self.cpu_port in self.ports:
                raise ValueError(f"cpu port {self.cpu_port} is also a data port ({self.ports[self.cpu_port]})")
        if self.thrift_port is not None and not 0 < self.thrift_port < 65536:
            raise ValueError(f"thrift port {self.thrift_port} is not a TCP port")


def switch_args(opts: Bmv2Options) -> list[str]:
    """simple_switch_grpc's arguments (after the program name) for `opts`."""
    opts.validate()
    args = ["--device-id", str(opts.device_id)]
    for port, iface in sorted(opts.ports.items()):
        args += ["-i", f"{port}@{iface}"]
    if opts.log_console:
        args.append("--log-console")
    if opts.log_file is not None:
        args += ["--log-file", str(opts.log_file)]
    args += ["--log-level", opts.log_level]
    if opts.pcap_dir is not None:
        args.append(f"--pcap={opts.pcap_dir}")
    if opts.thrift_port is not None:
        args += ["--thrift-port", str(opts.thrift_port)]
    args.append(str(opts.json) if opts.json is not None else "--no-p4")
    args += ["--", "--grpc-server-addr", opts.grpc_addr]
    if opts.cpu_port is not None:
        args += ["--cpu-port", str(opts.cpu_port)]
    return args


def _mounts(opts: Bmv2Options) -> list[str]:
    """The folders the switch reads or writes, each once (the unix socket's, the JSON's, ...)."""
    dirs: list[Path] = []
    if opts.grpc_addr.startswith("unix:"):
        dirs.append(Path(opts.grpc_addr[5:]).parent)
    for path in (opts.json, opts.log_file):
        if path is not None:
            dirs.append(Path(path).parent)
    if opts.pcap_dir is not None:
        dirs.append(Path(opts.pcap_dir))
    out: list[str] = []
    for d in dict.fromkeys(dirs):
        out += ["-v", f"{d}:{d}"]
    return out


def switch_command(tool: Tool, opts: Bmv2Options) -> list[str]:
    """The full argv: `[nsenter --net=NS] simple_switch_grpc ...`, or `podman run ... IMAGE simple_switch_grpc ...`."""
    args = switch_args(opts)
    if not tool.in_image:
        cmd = [str(tool.binary), *args]
        return ["nsenter", f"--net={opts.netns_path}", *cmd] if opts.netns_path else cmd
    network = f"ns:{opts.netns_path}" if opts.netns_path else "host"
    cmd = ["podman", "run", "--rm", "--pull=never", "--privileged", f"--network={network}"]
    if opts.container_name:
        cmd += ["--name", opts.container_name]
    for label in opts.labels:
        cmd += ["--label", label]
    cmd += _mounts(opts)
    return [*cmd, str(tool.image), tool.program, *args]
