"""Start a lab's simple_switch_grpc, with its log, state file and readiness; stop it.

Why not the embedded switch's `switch.embedded.process`: that one launches the kit's own
Python switch, which writes its own state file; BMv2 is another program, so this launcher
writes the state for it (`switch/state.py`). In the image variant the process the kit owns
is `podman run` (in the foreground, so its output is the switch's log), while the switch
itself runs in a named, labelled container, which the state names. Readiness is the same as
for the embedded switch (`wait_grpc_ready`: alive, and a gRPC channel is ready). Stopping
signals the pid only when its command line still names simple_switch_grpc, so a recycled pid
is never touched; a container is removed by its name.
"""

from __future__ import annotations

from pathlib import Path

from p4cf_kit.errors import PodmanError, PrerequisiteError, SwitchError
from p4cf_kit.grpc_ready import wait_grpc_ready
from p4cf_kit.podman.conf import podman_env
from p4cf_kit.podman.runner import podman, podman_binary
from p4cf_kit.switch import pids
from p4cf_kit.switch.bmv2.command import Bmv2Options, switch_command
from p4cf_kit.switch.bmv2.toolchain import Tool
from p4cf_kit.switch.state import LOG_FILE, SwitchState, clear_state, read_state, state_file, write_state

MARKER = "simple_switch_grpc"
DATA_PATH = "BMv2 simple_switch_grpc (user space, its own packet loop over the switch veths)"


def start_bmv2(state: Path, tool: Tool, opts: Bmv2Options, timeout: float = 30.0) -> SwitchState:
    """Start simple_switch_grpc for `opts` and wait until it serves P4Runtime (state file in `state`)."""
    state.mkdir(parents=True, exist_ok=True)
    log_path, path = state / LOG_FILE, state_file(state)
    old = read_state(path)
    if old is not None and pids.runs(old.pid, MARKER):
        raise SwitchError(f"a BMv2 switch (pid {old.pid}) already runs for this lab; `p4cf down` first")
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
    try:
        proc = pids.spawn(cmd, log_path, env)
    except OSError as exc:
        raise SwitchError(f"cannot run {cmd[0]}: {exc}") from exc
    written = SwitchState(target="bmv2", pid=proc.pid, grpc_addr=opts.grpc_addr, data_path=DATA_PATH,
                          container=opts.container_name if tool.in_image else None)
    write_state(path, written)
    try:
        wait_grpc_ready(opts.grpc_addr, timeout, alive=lambda: proc.poll() is None)
    except SwitchError as exc:
        stop_bmv2(written)
        clear_state(path, proc.pid)
        raise SwitchError(f"BMv2 ({tool.describe()}): {exc}; "
                          f"switch log {log_path}:\n{pids.log_tail(log_path)}") from None
    return written


def stop_bmv2(running: SwitchState, grace: float = 3.0) -> bool:
    """Stop a BMv2 (its container removed, then SIGTERM, SIGKILL after `grace` s); True when it ran."""
    if running.container:
        try:  # the switch in the container is pid 1 there and ignores SIGTERM: remove it
            podman("rm", "-f", "-t", str(max(1, int(grace))), running.container, check=False, timeout=60)
        except (PrerequisiteError, PodmanError):
            pass
    return pids.stop(running.pid, MARKER, grace)
