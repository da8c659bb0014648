"""The switch targets the kit can run, started and stopped the same way: "embedded" and "bmv2"
(and "remote", a switch the kit only programs: `target_of`).

Why a registry: the lab, the CLI and the tests choose a target by name and must not care which
program runs. Whichever runs, a lab's switch is found, described and stopped here, from the
state file it leaves in the lab's state folder (`switch/state.py`). Each target gets the same
port wiring (port number -> interface, optionally in the lab's switch netns) and the same
P4Runtime controller; they differ in the pipeline the controller pushes: the shipped P4Info
with an empty device config for the embedded switch (it runs the program natively), p4c's
P4Info with the BMv2 JSON for BMv2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from p4cf_kit.errors import ConfigError, SwitchError
from p4cf_kit.labels import LABEL
from p4cf_kit.paths import P4INFO_TXT
from p4cf_kit.switch import pids
from p4cf_kit.switch.bmv2 import process as bmv2_process
from p4cf_kit.switch.embedded import process as embedded_process
from p4cf_kit.switch.state import SwitchState, clear_state, read_state, state_file

if TYPE_CHECKING:
    from p4cf_kit.config import SwitchConfig

DEFAULT_TARGET = "embedded"
REMOTE = "remote"  # a switch the kit programs but does not run (switch/remote.py)


@dataclass(frozen=True)
class PipelineFiles:
    """What SetForwardingPipelineConfig sends: a P4Info (text) and the device config (None: empty)."""

    p4info: Path
    device_config: Path | None = None

    def device_config_bytes(self) -> bytes:
        return self.device_config.read_bytes() if self.device_config is not None else b""


class SwitchTarget(Protocol):
    name: str
    marker: str   # in the command line of its process: a pid that lacks it is not this switch

    def unavailable(self) -> str | None:
        """None when this machine can run the target, else why not (with the fix)."""

    def pipeline(self) -> PipelineFiles:
        """The P4Info and device config the controller must push to this target."""

    def start(self, state: Path, ports: Mapping[int, str], grpc_addr: str, device_id: int = 1,
              netns_path: str | None = None, timeout: float = 30.0,
              container_name: str | None = None, labels: tuple[str, ...] = (),
              datapath: str = "auto") -> SwitchState:
        """Start the switch with `ports` (state file and log in `state`); return once P4Runtime
        answers. `datapath` is the embedded switch's --datapath (other targets take only "auto")."""

    def stop(self, running: SwitchState) -> bool:
        """Stop the switch `running` describes; True when it was running."""


class EmbeddedTarget:
    """The kit's own P4Runtime switch (always available)."""

    name = "embedded"
    marker = embedded_process.MARKER

    def unavailable(self) -> str | None:
        return None

    def pipeline(self) -> PipelineFiles:
        return PipelineFiles(p4info=P4INFO_TXT, device_config=None)

    def start(self, state: Path, ports: Mapping[int, str], grpc_addr: str, device_id: int = 1,
              netns_path: str | None = None, timeout: float = 30.0,
              container_name: str | None = None, labels: tuple[str, ...] = (),
              datapath: str = "auto") -> SwitchState:
        return embedded_process.start_switch(state, dict(ports), grpc_addr, device_id, netns_path, timeout=timeout,
                                             datapath=datapath)

    def stop(self, running: SwitchState) -> bool:
        return pids.stop(running.pid, self.marker)


class Bmv2Target:
    """simple_switch_grpc with the program compiled by p4c (host binaries or local p4lang images)."""

    name = "bmv2"
    marker = bmv2_process.MARKER

    def __init__(self, log_level: str = "warn", pcap_dir: Path | None = None) -> None:
        self.log_level = log_level
        self.pcap_dir = pcap_dir

    def unavailable(self) -> str | None:
        from p4cf_kit.paths import P4_PROGRAM
        from p4cf_kit.switch.bmv2 import compile as p4compile
        from p4cf_kit.switch.bmv2 import toolchain
        if toolchain.find_simple_switch_grpc() is None:
            return toolchain.MISSING_BMV2
        if not p4compile.is_up_to_date(P4_PROGRAM, p4compile.default_build_dir()) \
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
              datapath: str = "auto") -> SwitchState:
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
        from p4cf_kit.switch.bmv2.consistency import json_p4info_difference
        from p4cf_kit.switch.bmv2.toolchain import require_simple_switch_grpc
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
        return bmv2_process.start_bmv2(state, tool, opts, timeout=timeout)

    def stop(self, running: SwitchState) -> bool:
        return bmv2_process.stop_bmv2(running)


TARGETS: dict[str, SwitchTarget] = {"embedded": EmbeddedTarget(), "bmv2": Bmv2Target()}


def get_target(name: str) -> SwitchTarget:
    """The target called `name`; ConfigError lists the known ones."""
    try:
        return TARGETS[name]
    except KeyError:
        raise ConfigError(f"switch target {name!r} is unknown; use one of {', '.join(TARGETS)}") from None


def target_of(switch: SwitchConfig) -> SwitchTarget:
    """The target a lab's [switch] section names, configured by it where it needs to be (remote)."""
    if switch.remote:
        from p4cf_kit.switch.remote import RemoteTarget
        return RemoteTarget(switch)
    return get_target(switch.target)


def running(state: Path) -> SwitchState | None:
    """The switch running for the lab whose state folder is `state`, whichever target it is;
    None when none runs (no state file, or its pid no longer runs that switch). A remote switch
    (no process of ours) counts as running while its state file says a lab programs it."""
    found = read_state(state_file(state))
    if found is None:
        return None
    if found.target == REMOTE:
        return found
    if found.machine != "local":
        from p4cf_kit.switch import elsewhere
        return found if elsewhere.running(state, found) else None
    target = TARGETS.get(found.target)
    if target is None or not pids.runs(found.pid, target.marker):
        return None
    return found


def running_pid(state: Path) -> int | None:
    """The pid of the lab's switch (whichever target runs), else None."""
    found = running(state)
    return found.pid if found is not None else None


def switch_up(state: Path) -> bool:
    """True while the lab has a switch: a process of ours running, or a remote one it programs."""
    return running(state) is not None


def remote_in_use(state: Path) -> bool:
    """True while a lab programs a remote switch (it has no pid of ours to look for)."""
    found = read_state(state_file(state))
    return found is not None and found.target == REMOTE


def data_path(state: Path) -> str | None:
    """What forwards frames in the lab's switch, whichever target runs (None when none runs)."""
    found = running(state)
    return found.data_path if found is not None else None


def stop_switch(state: Path) -> int | None:
    """Stop the lab's switch, whichever target runs, and forget its state; the pid stopped.
    A remote switch is its owner's: only the note that a lab programs it goes."""
    path = state_file(state)
    found = read_state(path)
    if found is not None and found.machine != "local":
        from p4cf_kit.switch import elsewhere
        was = elsewhere.stop(state, found)
        clear_state(path)
        return found.pid if was else None
    target = TARGETS.get(found.target) if found is not None else None
    stopped = found.pid if found is not None and target is not None and target.stop(found) else None
    clear_state(path)
    return stopped
