"""When a checkpoint's images are written, on whichever machine the source runs.

Why: `podman container checkpoint` returns some 60-90 ms after CRIU has written the images
(Podman tidies up: cgroups, the container's state, conmon); within one machine the migration
already moves on when the server exits, CRIU's last step (phases.wait_dumped, a pidfd). Across
machines the images must also cross a network, so the same wait matters as much: on this
machine it is the same pidfd; on another machine a watcher started there during prepare (one
SSH session, `python3 -c`, which every machine of a lab has for the nudge) holds a pidfd on the
server and prints one line when it exits. The checkpoint command is finished later, in
cleanup, for its statistics and its verdict.
"""

from __future__ import annotations

import select
import subprocess
import time

from p4cf_kit.children import settle
from p4cf_kit.errors import PodmanError
from p4cf_kit.machines.machine import Machine
from p4cf_kit.machines.remote import RemoteMachine
from p4cf_kit.migration import phases
from p4cf_kit.podman.runner import finish

CHECKPOINT = ("container", "checkpoint", "--tcp-established", "--print-stats")
WATCHER = """
import os, select, sys
try:
    fd = os.pidfd_open(int(sys.argv[1]))
except ProcessLookupError:
    print("exited", flush=True); sys.exit(0)
except OSError as exc:
    print("unsupported", exc, flush=True); sys.exit(0)
print("watching", flush=True)
ready = select.select([fd, sys.stdin], [], [])[0]
print("exited" if fd in ready else "called off", flush=True)
"""


class DumpWatch:
    """Start it before the freeze; `start` the checkpoint, `wait` until its images are written."""

    def __init__(self, machine: Machine, pid: int) -> None:
        self.machine, self.pid = machine, pid
        self.watcher: subprocess.Popen[bytes] | None = None
        if isinstance(machine, RemoteMachine):
            watcher = machine.popen(["python3", "-c", WATCHER, str(pid)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE)
            assert watcher.stdout is not None
            first = watcher.stdout.readline().decode().strip()
            if first == "watching":
                self.watcher = watcher
            else:                        # gone already, or no pidfd there: the command's end will do
                settle(watcher)

    def start(self, container: str) -> subprocess.Popen[str]:
        """The checkpoint command, running; on this machine at idle CPU priority with its conmon,
        as within one machine (phases.start_checkpoint): Podman's tidying up after CRIU then
        gives way to the restore and to the lab's workloads."""
        if isinstance(self.machine, RemoteMachine):
            return self.machine.podman_start(*CHECKPOINT, container)
        return phases.start_checkpoint(container, self.pid)

    def wait(self, dump: subprocess.Popen[str], timeout: float) -> None:
        """Return once the images are written; PodmanError when the checkpoint fails first."""
        if self.machine.is_local:
            phases.wait_dumped(dump, self.pid, timeout)
            return
        if self.watcher is None or self.watcher.stdout is None:
            finish(dump, timeout)
            return
        deadline = time.monotonic() + timeout
        while True:
            if select.select([self.watcher.stdout], [], [], 0.002)[0]:
                if self.watcher.stdout.readline().decode().strip() == "exited":
                    return
                finish(dump, timeout)        # the watcher went away: the command's end will do
                return
            if dump.poll() is not None:
                finish(dump, timeout=1)      # raises when it failed
                return
            if time.monotonic() > deadline:
                raise PodmanError(f"the checkpoint did not finish within {timeout:.0f} s")

    def close(self) -> None:
        """End the watcher (its stdin's end tells it to stop watching)."""
        if self.watcher is not None:
            settle(self.watcher)
            self.watcher = None
