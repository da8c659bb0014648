"""Is a backend ready for traffic: the workload's own check, then its TCP port.

Why both: an application can listen before it can answer (loading its data), so a custom
workload may name a command that says when it is ready (`workload.ready`, run in the server
container with `podman exec`, exit 0 = ready); and whatever the check says, nothing is sent
before the port listens. A check that never passes is an error that shows the check, what
it printed last, the tail of the application's log and what to change.
"""

from __future__ import annotations

import shlex
import time

from p4cf_kit.apps.settings import WorkloadConfig
from p4cf_kit.errors import PodmanError
from p4cf_kit.machines.machine import LOCAL, Machine

LOG_TAIL_LINES = 15


def log_tail(container: str, machine: Machine = LOCAL, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a container's output (empty when there are none). Cut here: Podman 4.3's
    `logs --tail N` printed nothing for a short k8s-file log."""
    proc = machine.podman("logs", container, check=False)
    return "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-lines:])


def wait_check(wl: WorkloadConfig, container: str, machine: Machine = LOCAL) -> None:
    """Poll `wl.ready` in `container` until it exits 0; PodmanError with the check, its last output,
    the log tail and the fix after `wl.ready_timeout_s`."""
    if not wl.ready:
        return
    deadline = time.monotonic() + wl.ready_timeout_s
    delay = 0.05
    while True:
        proc = machine.podman("exec", container, *wl.ready, check=False)
        if proc.returncode == 0:
            return
        if time.monotonic() > deadline:
            said = (proc.stdout + proc.stderr).strip()[-400:] or "(nothing)"
            raise PodmanError(
                f"{container} is not ready: its readiness check `{shlex.join(wl.ready)}` did not pass within "
                f"{wl.ready_timeout_s:g} s (last exit status {proc.returncode}, output: {said}).\n"
                f"Its log ends with:\n{log_tail(container, machine) or '(empty)'}\n"
                "Fix: make the application pass the check, or change workload.ready (a command run in the "
                "server container; exit 0 = ready) or raise workload.ready_timeout_s in the lab config.")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
