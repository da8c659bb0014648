"""Start, find and stop a lab's simple_switch_grpc, with pid file, log file and readiness.

Why not the embedded switch's `p4cf_kit.switch.process`: that one launches the kit's own
Python switch and recognises it by its command line; BMv2 is another program, and in the image
variant the process the kit owns is `podman run` (in the foreground, so its output is the
switch's log), while the switch itself runs in a named, labelled container. Readiness is the
same as for the embedded switch (`wait_grpc_ready`: alive, and a gRPC channel is ready).
Stopping signals the pid only when its command line still names simple_switch_grpc, so a
recycled pid is never touched; a container is removed by its name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from p4cf_kit.errors import PodmanError, PrerequisiteError, SwitchError
from p4cf_kit.podman.conf import podman_env
from p4cf_kit.podman.runner import podman, podman_binary
from p4cf_kit.switch.bmv2.command import Bmv2Options, switch_command
from p4cf_kit.switch.bmv2.toolchain import Tool
from p4cf_kit.switch import pids
from p4cf_kit.switch.process import wait_grpc_ready

PID_FILE = "bmv2.pid"
LOG_FILE = "switch.log"
_MARKER = "simple_switch_grpc"


@dataclass(frozen=True)
class Bmv2Process:
    """A running BMv2: the pid the kit started, where it serves P4Runtime, its log, its container."""

    pid: int
    grpc_addr: str
    log_path: Path
    pid_path: Path
    container: str | None = None


def is_bmv2(pid: int) -> bool:
    """True when `pid` runs (or, via podman run, starts) simple_switch_grpc and is not a zombie."""
    return pids.runs(pid, _MARKER)


def _read_pid_file(path: Path) -> tuple[int | None, str | None]:
    try:
        lines = path.read_text().splitlines()
        return int(lines[0]), (lines[1].strip() or None) if len(lines) > 1 else None
    except (OSError, ValueError, IndexError):
        return None, None


def running_pid(state: Path) -> int | None:
    """The pid of this lab's BMv2 when it runs, else None."""
    pid, _ = _read_pid_file(state / PID_FILE)
    return pid if pid is not None and is_bmv2(pid) else None


def start_bmv2(state: Path, tool: Tool, opts: Bmv2Options, timeout: float = 30.0) -> Bmv2Process:
    """Start simple_switch_grpc for `opts` and wait until it serves P4Runtime (pid file in `state`)."""
    state.mkdir(parents=True, exist_ok=True)
    pid_path, log_path = state / PID_FILE, state / LOG_FILE
    old = running_pid(state)
    if old is not None:
        raise SwitchError(f"a BMv2 switch (pid {old}) already runs for this lab; `p4cf down` first")
    if opts.grpc_addr.startswith("unix:"):
        Path(opts.grpc_addr[5:]).unlink(missing_ok=True)
    if opts.pcap_dir is not None:
        Path(opts.pcap_dir).mkdir(parents=True, exist_ok=True)  # BMv2 exits if it is missing
    if tool.in_image and opts.container_name:
        podman("rm", "-f", "-t", "0", opts.container_name, check=False)  # a crashed run's leftover
    cmd = switch_command(tool, opts)
    env = None
    if cmd[0] == "podman":
        cmd[0], env = podman_binary(), podman_env()
    with open(log_path, "ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, env=env)
        except OSError as exc:
            raise SwitchError(f"cannot run {cmd[0]}: {exc}") from exc
    container = opts.container_name if tool.in_image else None
    pid_path.write_text(f"{proc.pid}\n{container or ''}\n")
    try:
        wait_grpc_ready(opts.grpc_addr, timeout, alive=lambda: proc.poll() is None)
    except SwitchError as exc:
        stop_bmv2(state)
        raise SwitchError(f"BMv2 ({tool.describe()}): {exc}; switch log {log_path}:\n{pids.log_tail(log_path)}") from None
    return Bmv2Process(pid=proc.pid, grpc_addr=opts.grpc_addr, log_path=log_path,
                       pid_path=pid_path, container=container)


def _wait_gone(pid: int, deadline: float) -> bool:
    while pids.alive(pid) and time.monotonic() < deadline:
        pids.reap(pid)
        time.sleep(0.02)
    pids.reap(pid)
    return not pids.alive(pid)


def stop_bmv2(state: Path, grace: float = 3.0) -> int | None:
    """Stop this lab's BMv2 (container removed, then SIGTERM, SIGKILL after `grace` s); returns its pid."""
    pid_path = state / PID_FILE
    pid, container = _read_pid_file(pid_path)
    if container:
        try:  # the switch in the container is pid 1 there and ignores SIGTERM: remove it
            podman("rm", "-f", "-t", str(max(1, int(grace))), container, check=False, timeout=60)
        except (PrerequisiteError, PodmanError):
            pass
    stopped = None
    if pid is not None and is_bmv2(pid):
        stopped = pid
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if not _wait_gone(pid, time.monotonic() + grace) and is_bmv2(pid):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, time.monotonic() + 5)
    elif pid is not None:
        pids.reap(pid)
    pid_path.unlink(missing_ok=True)
    return stopped
