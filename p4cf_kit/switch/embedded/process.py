"""Start the embedded switch as a subprocess, with its log, state file and readiness.

Why a subprocess (not a thread of the notebook): the data plane busy-loops on
AF_PACKET sockets, must run inside the switch netns, and has to survive or die
independently of the controller (tests stop it to prove it is the only path).

The process runs under `nsenter --net=/run/netns/<ns>` when the lab keeps its switch
ports in a kit netns (nsenter execs, so the pid is the switch's own). Its loopback is
then private, so P4Runtime is served on a unix socket in the lab's state folder
(reachable from the root netns; the server counts unix sockets as local). Readiness is
polled: the process must still be alive, a gRPC channel must become ready, and the switch
must have written its state file (`switch/state.py`). Finding and stopping a running switch is
the registry's (`switch.targets`), for every target alike.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from p4cf_kit.errors import SwitchError
from p4cf_kit.grpc_ready import wait_grpc_ready
from p4cf_kit.paths import P4INFO_TXT
from p4cf_kit.switch import pids
from p4cf_kit.switch.state import LOG_FILE, STATE_FILE, SwitchState, clear_state, read_state, state_file

MARKER = "p4cf_kit.switch"   # in the command line of every embedded switch the kit starts


def switch_command(ports: dict[int, str], grpc_addr: str, device_id: int = 1,
                   netns_path: str | None = None, p4info: Path | None = P4INFO_TXT,
                   state_file: Path | None = None, datapath: str = "auto") -> list[str]:
    """The argv that runs the embedded switch with `ports` (port -> interface)."""
    cmd = [sys.executable, "-m", "p4cf_kit.switch.embedded", "--device-id", str(device_id),
           "--grpc-server-addr", grpc_addr, "--log-console", "--datapath", datapath]
    for port, iface in sorted(ports.items()):
        cmd += ["-i", f"{port}@{iface}"]
    if p4info is not None and Path(p4info).exists():
        cmd += ["--p4info", str(p4info)]
    if state_file is not None:
        cmd += ["--state-file", str(state_file)]
    if netns_path:
        cmd = ["nsenter", f"--net={netns_path}", *cmd]
    return cmd


def start_switch(state: Path, ports: dict[int, str], grpc_addr: str, device_id: int = 1,
                 netns_path: str | None = None, timeout: float = 15.0,
                 datapath: str = "auto") -> SwitchState:
    """Start the embedded switch and wait until it serves P4Runtime and has written its state
    file in `state`; the state it wrote."""
    state.mkdir(parents=True, exist_ok=True)
    log_path, path = state / LOG_FILE, state_file(state)
    old = read_state(path)
    if old is not None and pids.runs(old.pid, MARKER):
        raise SwitchError(f"a switch (pid {old.pid}) already runs for this lab; `p4cf down` first")
    clear_state(path)
    if grpc_addr.startswith("unix:"):
        Path(grpc_addr[5:]).unlink(missing_ok=True)
    cmd = switch_command(ports, grpc_addr, device_id, netns_path, state_file=path, datapath=datapath)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[3]),
                                                      env.get("PYTHONPATH", "")]))
    proc = pids.spawn(cmd, log_path, env)
    try:
        deadline = time.monotonic() + timeout
        wait_grpc_ready(grpc_addr, timeout, alive=lambda: proc.poll() is None)
        while (written := read_state(path)) is None or written.pid != proc.pid:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SwitchError(f"the switch serves P4Runtime but wrote no {STATE_FILE} within {timeout:.0f} s")
            time.sleep(0.01)
    except SwitchError as exc:
        pids.stop(proc.pid, MARKER)
        pids.reap(proc.pid)
        clear_state(path, proc.pid)
        raise SwitchError(f"{exc}; switch log {log_path}:\n{pids.log_tail(log_path)}") from None
    return written
