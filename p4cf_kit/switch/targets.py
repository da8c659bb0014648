"""The switch targets the kit can run, started and stopped the same way: "embedded" and "bmv2".

Why a registry: the lab, the CLI and the tests choose a target by name and must not care which
program runs. Each target gets the same port wiring (port number -> interface, optionally in
the lab's switch netns) and the same P4Runtime controller; they differ in the pipeline the
controller pushes: the shipped P4Info with an empty device config for the embedded switch
(it runs the program natively), p4c's P4Info with the BMv2 JSON for BMv2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Protocol

from p4cf_kit.errors import ConfigError, SwitchError
from p4cf_kit.labels import LABEL
from p4cf_kit.paths import P4INFO_TXT

if TYPE_CHECKING:
    from p4cf_kit.config import SwitchConfig

DEFAULT_TARGET = "embedded"


@dataclass(frozen=True)
class PipelineFiles:
    """What SetForwardingPipelineConfig sends: a P4Info (text) and the device config (None: empty)."""

    p4info: Path
    device_config: Path | None = None

    def device_config_bytes(self) -> bytes:
        return self.device_config.read_bytes() if self.device_config is not None else b""


class RunningProcess(Protocol):
    """What `start` returns (p4cf_kit.switch.process.SwitchProcess or bmv2.process.Bmv2Process)."""

    pid: int | None  # None: a remote switch, not a process of ours
    grpc_addr: str
    log_path: Path


class SwitchTarget(Protocol):
    name: str

    def unavailable(self) -> str | None:
        """None when this machine can run the target, else why not (with the fix)."""

    def pipeline(self) -> PipelineFiles:
        """The P4Info and device config the controller must push to this target."""

    def start(self, state: Path, ports: Mapping[int, str], grpc_addr: str, device_id: int = 1,
              netns_path: str | None = None, timeout: float = 30.0,
              container_name: str | None = None, labels: tuple[str, ...] = (),
              datapath: str = "auto") -> RunningProcess:
        """Start the switch with `ports` (pid and log in `state`); return once P4Runtime answers.
        `datapath` is the embedded switch's --datapath (other targets take only "auto")."""

    def running_pid(self, state: Path) -> int | None: ...

    def stop(self, state: Path) -> int | None: ...


class EmbeddedTarget:
    """The kit's own P4Runtime switch (always available)."""

    name = "embedded"

    def unavailable(self) -> str | None:
        return None

    def pipeline(self) -> PipelineFiles:
        return PipelineFiles(p4info=P4INFO_TXT, device_config=None)

    def start(self, state: Path, ports: Mapping[int, str], grpc_addr: str, device_id: int = 1,
              netns_path: str | None = None, timeout: float = 30.0,
              container_name: str | None = None, labels: tuple[str, ...] = (),
              datapath: str = "auto") -> RunningProcess:
        from p4cf_kit.switch import process
        return process.start_switch(state, dict(ports), grpc_addr, device_id, netns_path, timeout=timeout,
                                    datapath=datapath)

    def running_pid(self, state: Path) -> int | None:
        from p4cf_kit.switch import process
        return process.running_pid(state)

    def stop(self, state: Path) -> int | None:
        from p4cf_kit.switch import process
        pid = process.running_pid(state)
        if pid is not None:
            process.stop_pid(pid, state / process.PID_FILE)
        else:
            (state / process.PID_FILE).unlink(missing_ok=True)
        return pid


class Bmv2Target:
    """simple_switch_grpc with the program compiled by p4c (host binaries or local p4lang images)."""

    name = "bmv2"

    def __init__(self, log_level: str = "warn", pcap_dir: Path | None = None) -> None:
        self.log_level = log_level
        self.pcap_dir = pcap_dir

    def unavailable(self) -> str | None:
        from p4cf_kit.switch.bmv2 import compile as p4compile, toolchain
        if toolchain.find_simple_switch_grpc() is None:
            return toolchain.MISSING_BMV2
        if not p4compile.is_up_to_date(p4compile.P4_PROGRAM, p4compile.default_build_dir()) \
                and toolchain.find_p4c() is None:
            return f"{toolchain.MISSING_P4C}; BMv2 needs the program compiled (`p4cf p4 compile`)"
        return None

    def pipeline(self) -> PipelineFiles:
        from p4cf_kit.switch.bmv2.compile import ensure_compiled
        out = ensure_compiled()
        return PipelineFiles(p4info=out.p4info, device_config=out.json)

    def start(self, state: Path, ports: Mapping[int, str], grpc_addr: str, device_id: int = 1,
              netns_path: str | None = None, timeout: float = 30.0,
              container_name: str | None = None, labels: tuple[str, ...] = (),
              datapath: str = "auto") -> RunningProcess:
        if netns_path is None:
            # BMv2 built with Thrift (p4lang's images and tarballs are) serves its Thrift runtime on
            # 0.0.0.0:9090 with no way to bind it elsewhere: in the root netns anyone who reaches
            # the machine could rewrite the tables past P4Runtime. In a kit netns (no addresses
            # but loopback) only the kit reaches it.
            raise SwitchError("BMv2 runs only in a kit network namespace (its Thrift server listens "
                              "on every address of its netns); give it the lab's switch netns "
                              "(switch.netns = true)")
        if datapath != "auto":
            raise SwitchError(f"datapath {datapath!r} is an embedded-switch option; BMv2 has its own")
        from p4cf_kit.switch.bmv2.command import Bmv2Options
        from p4cf_kit.switch.bmv2.process import start_bmv2
        from p4cf_kit.switch.bmv2.toolchain import require_simple_switch_grpc
        from p4cf_kit.switch.bmv2.consistency import json_p4info_difference
        from p4cf_kit.switch.embedded.p4info import load_p4info
        tool = require_simple_switch_grpc()
        files = self.pipeline()  # compile now, so a p4c error shows before the switch starts
        assert files.device_config is not None
        why = json_p4info_difference(files.device_config, load_p4info(files.p4info))
        if why is not None:  # PI would take both and then misprogram entries
            raise SwitchError(f"the P4Info {files.p4info} does not describe the BMv2 JSON "
                              f"{files.device_config}: {why}; recompile with `p4cf p4 compile --force`")
        opts = Bmv2Options(ports=dict(ports), grpc_addr=grpc_addr, device_id=device_id,
                           log_level=self.log_level, pcap_dir=self.pcap_dir, netns_path=netns_path,
                           container_name=container_name or f"p4cf-bmv2-{Path(state).name}",
                           labels=labels or (LABEL,))
        return start_bmv2(state, tool, opts, timeout=timeout)

    def running_pid(self, state: Path) -> int | None:
        from p4cf_kit.switch.bmv2.process import running_pid
        return running_pid(state)

    def stop(self, state: Path) -> int | None:
        from p4cf_kit.switch.bmv2.process import stop_bmv2
        return stop_bmv2(state)


TARGETS: dict[str, SwitchTarget] = {"embedded": EmbeddedTarget(), "bmv2": Bmv2Target()}


def get_target(name: str) -> SwitchTarget:
    """The target called `name`; ConfigError lists the known ones."""
    try:
        return TARGETS[name]
    except KeyError:
        raise ConfigError(f"switch target {name!r} is unknown; use one of {', '.join(TARGETS)}") from None


def target_of(switch: "SwitchConfig") -> SwitchTarget:
    """The target a lab's [switch] section names, configured by it where it needs to be (remote)."""
    if switch.remote:
        from p4cf_kit.switch.remote import RemoteTarget
        return RemoteTarget(switch)
    return get_target(switch.target)


def switch_up(state: Path) -> bool:
    """True while the lab has a switch: a process of ours running, or a remote one it programs."""
    return running_pid(state) is not None or remote_in_use(state)


def remote_in_use(state: Path) -> bool:
    """True while a lab programs a remote switch (it has no pid of ours to look for)."""
    from p4cf_kit.switch.remote import RemoteTarget
    return RemoteTarget().in_use(state)


BMV2_DATA_PATH = "BMv2 simple_switch_grpc (user space, its own packet loop over the switch veths)"


def data_path(state: Path) -> str | None:
    """What forwards frames in the lab's switch, whichever target runs (None before it starts)."""
    from p4cf_kit.switch import process
    from p4cf_kit.switch.bmv2.process import running_pid as bmv2_pid
    if remote_in_use(state):
        from p4cf_kit.switch.remote import DATA_PATH
        return DATA_PATH
    if bmv2_pid(state) is not None:
        return BMV2_DATA_PATH
    if process.running_pid(state) is None:
        return None
    return process.data_path(state)


def running_pid(state: Path) -> int | None:
    """The pid of the lab's switch (whichever target runs), else None."""
    for target in TARGETS.values():
        pid = target.running_pid(state)
        if pid is not None:
            return pid
    return None


def stop_switch(names: object) -> int | None:
    """Stop a lab's switch, whichever target runs (`names.state` is its state folder); returns the pid."""
    state: Path = names.state  # type: ignore[attr-defined]
    stopped = None
    for target in TARGETS.values():
        pid = target.stop(state)
        stopped = stopped or pid
    from p4cf_kit.switch.remote import RemoteTarget
    RemoteTarget().stop(state)  # only the note that a lab programs it: the switch is its owner's
    return stopped
