"""Running a switch of each target (embedded, bmv2) for tests written once: `RunningSwitch`,
`running_switch`, and the helpers around them. The fixtures built on them (`switch_target`,
`switch_ports`, `switch_netns`) are in conftest.py, so every test module has them.

A test that takes `switch_target` (or a fixture built on it) runs once per target; the bmv2 run
is skipped, with the reason, where simple_switch_grpc (or p4c) is not installed. A module gives
the port map and the netns by overriding the `switch_ports` (port -> interface, default none)
and `switch_netns` (an `ip netns` name, default none: the root netns) fixtures. For a switch
shared by a whole module, build a fixture on `running_switch(name, ports, netns)`.

The embedded switch runs in-process on a free loopback port when there is no netns (so tests
can also look at its pipeline: `RunningSwitch.embedded`), else as the kit runs it: a process in
the netns serving P4Runtime on a unix socket, with the P4Info preloaded. BMv2 always runs as a
process, started with --no-p4: push `RunningSwitch.pipeline` (P4Info + device config); without a
netns it gets a scratch one of its own (the kit runs BMv2 only in a kit netns, for its Thrift
server), so its address is then a unix socket too.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from p4cf_kit.netns import create_netns, delete_netns
from p4cf_kit.switch.embedded.target import EmbeddedSwitch
from p4cf_kit.switch.state import LOG_FILE
from p4cf_kit.switch.targets import TARGETS, PipelineFiles, get_target, stop_switch

TARGET_NAMES = tuple(TARGETS)
BMV2_MISSING_REASON = "simple_switch_grpc not found: install BMv2 (README 'BMv2 target')"

only_embedded = pytest.mark.parametrize("switch_target", ["embedded"], indirect=True)
"""For a test that looks inside the embedded switch (its pipeline object): runs on it only."""


@dataclass
class RunningSwitch:
    """A started switch: its target, P4Runtime address and device id, the pipeline to push."""

    target: str
    grpc_addr: str
    device_id: int
    pipeline: PipelineFiles
    embedded: EmbeddedSwitch | None = None  # the in-process embedded switch, when it is one
    pid: int | None = None  # the switch process, when it is one
    log_path: Path | None = None


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def skip_reason(target: str) -> str | None:
    """Why `target` cannot run here (the fixture's skip reason), or None."""
    why = get_target(target).unavailable()
    if why is None:
        return None
    return BMV2_MISSING_REASON if why.startswith("simple_switch_grpc not found") else why


@contextmanager
def running_switch(name: str, ports: Mapping[int, str] | None = None,
                   netns: str | None = None) -> Iterator[RunningSwitch]:
    """Start target `name` on `ports` (in `netns`), yield it, stop it; pytest.skip when it cannot run.

    For fixtures of a wider scope than `switch_target` (e.g. one switch per module)."""
    why = skip_reason(name)
    if why is not None:
        pytest.skip(why)
    target = get_target(name)
    ports = dict(ports or {})
    if name == "embedded" and netns is None:
        sw = EmbeddedSwitch(grpc_addr="127.0.0.1:0", ports=ports)
        sw.start()
        try:
            yield RunningSwitch(name, f"127.0.0.1:{sw.port}", 1, target.pipeline(), embedded=sw)
        finally:
            sw.stop(grace=0)
        return
    state = Path(tempfile.mkdtemp(prefix="p4cf-t-sw-"))  # short: unix socket paths are limited
    scratch = None
    if name == "bmv2" and netns is None:  # BMv2 runs only in a kit netns (its Thrift server)
        scratch = netns = f"p4cf-t-{state.name[-8:]}"
        create_netns(scratch)
    try:
        addr = f"unix:{state}/p4rt.sock" if netns else f"127.0.0.1:{free_tcp_port()}"
        proc = target.start(state, ports, addr, 1, f"/run/netns/{netns}" if netns else None,
                            timeout=30.0, container_name=f"p4cf-t-bmv2-{state.name[-8:]}")
        try:
            yield RunningSwitch(name, addr, 1, target.pipeline(), pid=proc.pid, log_path=state / LOG_FILE)
        finally:
            stop_switch(state)
    finally:
        if scratch is not None:
            delete_netns(scratch)
        shutil.rmtree(state, ignore_errors=True)
