"""Start and stop the embedded switch as a subprocess, with pid file, log file and readiness.

Why a subprocess (not a thread of the notebook): the data plane busy-loops on
AF_PACKET sockets, must run inside the switch netns, and has to survive or die
independently of the controller (tests stop it to prove it is the only path).

The process runs under `nsenter --net=/run/netns/<ns>` when the lab keeps its switch
ports in a kit netns (nsenter execs, so the pid is the switch's own). Its loopback is
then private, so P4Runtime is served on a unix socket in the lab's state folder
(reachable from the root netns; the server counts unix sockets as local). Readiness is
polled: the process must still be alive and a gRPC channel must become ready.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from p4cf_kit.errors import SwitchError
from p4cf_kit.grpc_ready import wait_until_serving
from p4cf_kit.paths import P4INFO_TXT
from p4cf_kit.switch import pids

PID_FILE = "switch.pid"
LOG_FILE = "switch.log"
_MARKER = "p4cf_kit.switch"


@dataclass(frozen=True)
class SwitchProcess:
    """A running switch: its pid, where it serves P4Runtime, and its log."""

    pid: int
    grpc_addr: str
    log_path: Path
    pid_path: Path


def switch_command(ports: dict[int, str], grpc_addr: str, device_id: int = 1,
                   netns_path: str | None = None, p4info: Path | None = P4INFO_TXT,
                   log_path: Path | None = None, datapath: str = "auto") -> list[str]:
    """The argv that runs the embedded switch with `ports` (port -> interface)."""
    cmd = [sys.executable, "-m", "p4cf_kit.switch.embedded", "--device-id", str(device_id),
           "--grpc-server-addr", grpc_addr, "--log-console", "--datapath", datapath]
    for port, iface in sorted(ports.items()):
        cmd += ["-i", f"{port}@{iface}"]
    if p4info is not None and Path(p4info).exists():
        cmd += ["--p4info", str(p4info)]
    if netns_path:
        cmd = ["nsenter", f"--net={netns_path}", *cmd]
    return cmd


def _is_switch(pid: int) -> bool:
    """True when `pid` is (still) a live kit switch process, so a recycled pid is never signalled."""
    return pids.runs(pid, _MARKER)


def wait_grpc_ready(grpc_addr: str, timeout: float, alive: "callable[[], bool] | None" = None) -> None:
    """Poll until a gRPC channel to `grpc_addr` is ready; SwitchError after `timeout` s."""
    deadline = time.monotonic() + timeout
    channel = grpc.insecure_channel(grpc_addr)
    try:
        while True:
            if alive is not None and not alive():
                raise SwitchError("the switch process exited during start-up")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SwitchError(f"no P4Runtime server answers on {grpc_addr} after {timeout:.0f} s")
            if wait_until_serving(channel, min(0.2, remaining)):
                return
    finally:
        channel.close()


def start_switch(state: Path, ports: dict[int, str], grpc_addr: str, device_id: int = 1,
                 netns_path: str | None = None, timeout: float = 15.0,
                 datapath: str = "auto") -> SwitchProcess:
    """Start the embedded switch and wait until it serves P4Runtime (pid file in `state`)."""
    state.mkdir(parents=True, exist_ok=True)
    pid_path, log_path = state / PID_FILE, state / LOG_FILE
    if pid_path.exists():
        old = int(pid_path.read_text().strip() or 0)
        if old and _is_switch(old):
            raise SwitchError(f"a switch (pid {old}) already runs for this lab; `p4cf down` first")
    if grpc_addr.startswith("unix:"):
        Path(grpc_addr[5:]).unlink(missing_ok=True)
    cmd = switch_command(ports, grpc_addr, device_id, netns_path, log_path=log_path, datapath=datapath)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                      env.get("PYTHONPATH", "")]))
    with open(log_path, "ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, env=env)
    pid_path.write_text(f"{proc.pid}\n")
    try:
        wait_grpc_ready(grpc_addr, timeout, alive=lambda: proc.poll() is None)
    except SwitchError as exc:
        stop_pid(proc.pid, pid_path)
        raise SwitchError(f"{exc}; switch log {log_path}:\n{pids.log_tail(log_path)}") from None
    return SwitchProcess(pid=proc.pid, grpc_addr=grpc_addr, log_path=log_path, pid_path=pid_path)


def stop_pid(pid: int, pid_path: Path | None = None, grace: float = 3.0) -> None:
    """SIGTERM the switch `pid`, SIGKILL after `grace` s; reap it if it is our child."""
    if _is_switch(pid):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while pids.alive(pid) and time.monotonic() < deadline:
            pids.reap(pid)
            time.sleep(0.02)
        if _is_switch(pid):
            os.kill(pid, signal.SIGKILL)
            while pids.alive(pid):
                pids.reap(pid)
                time.sleep(0.01)
    pids.reap(pid)
    if pid_path is not None:
        pid_path.unlink(missing_ok=True)


def data_path(state: Path) -> str | None:
    """What forwards frames in this lab's embedded switch, as its last start-up line says."""
    try:
        lines = (state / LOG_FILE).read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith("p4cf switch: device") and "; data plane " in line:
            return line.split("; data plane ", 1)[1].strip()
    return None


def running_pid(state: Path) -> int | None:
    """The pid of this lab's switch when it is running, else None."""
    pid_path = state / PID_FILE
    try:
        pid = int(pid_path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_switch(pid) else None


def stop_switch(names: object) -> int | None:
    """Stop the switch of a lab (`names.state` is its state folder); returns the pid stopped."""
    state: Path = names.state  # type: ignore[attr-defined]
    pid = running_pid(state)
    if pid is not None:
        stop_pid(pid, state / PID_FILE)
    else:
        (state / PID_FILE).unlink(missing_ok=True)
    return pid
