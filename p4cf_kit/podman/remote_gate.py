"""The restore gate of a landing container on another machine, driven over its SSH connection.

Same protocol as `restore_gate.RestoreGate` (a FIFO GATES_DIR/ID read by the gated runc there,
side files .owner, .wait, .reached, .resumed), same methods, so a staged restore is staged the
same way wherever it lands. What differs is the cost of a look: each new SSH command costs a
session and a login shell on the machine (about 0.1-0.2 s on the emulated machine, whose root
shell starts pyenv), far more than the restore itself. So one session per gate, a *keeper*,
is opened while the migration prepares: a small shell loop there that says when the restore
reached the gate, reads the kit's verdict from its stdin, writes it to the FIFO and then says
when CRIU resumed the tasks. Inside the downtime the kit only writes one line to a pipe and
reads one back.
"""

from __future__ import annotations

import os
import select
import shlex
import subprocess
import time

from p4cf_kit.errors import PodmanError
from p4cf_kit.machines.machine import Machine
from p4cf_kit.podman.restore_gate import ABORT, GATES_DIR, GO

UNREACHED, MISSED = "unreached", "missed"   # the keeper's words for the two ways to time out
TICK_S = 0.002


def _keeper_script(base: str, timeout: float) -> str:
    """The keeper's shell loop (POSIX sh; `sleep` with fractions, as coreutils and busybox have)."""
    ticks, t = max(1, int(timeout / TICK_S)), max(1, int(timeout))
    return (f"g={shlex.quote(base)}\n"
            f'i=0; until [ -e "$g.reached" ]; do i=$((i+1)); [ $i -gt {ticks} ] && {{ echo {UNREACHED}; exit 3; }}; '
            f"sleep {TICK_S}; done\n"
            "echo reached\n"
            # the kit went away (its session ended: sshd noticed, or the kit died): call the
            # restore off now, so it does not hold its container's lock until the gate's timeout
            f'read -r verdict || {{ timeout 2 sh -c "echo {ABORT} > $g"; exit 5; }}\n'
            f'timeout {t} sh -c "echo $verdict > $g" || {{ echo {UNREACHED}; exit 3; }}\n'
            f'[ "$verdict" = {GO} ] || {{ echo answered; exit 0; }}\n'
            f'i=0; until [ -e "$g.resumed" ]; do i=$((i+1)); [ $i -gt {ticks} ] && {{ echo {MISSED}; exit 4; }}; '
            f"sleep {TICK_S}; done\n"
            "echo resumed\n")


class RemoteGate:
    """The FIFO one staged restore on `machine` waits on, and its keeper; create before starting
    the restore."""

    def __init__(self, machine: Machine, container_id: str, owner: str, timeout: float = 60.0) -> None:
        self.machine = machine
        base = f"{GATES_DIR}/{container_id}"
        self.path, self.resumed_marker, self.reached_marker = base, f"{base}.resumed", f"{base}.reached"
        self.answered = False
        machine.run(["sh", "-c", f"mkdir -p {GATES_DIR} && rm -f {base} {base}.* && mkfifo -m 600 {base} "
                     f"&& printf %s {shlex.quote(owner)} > {base}.owner && : > {base}.wait"])
        self._keeper = machine.popen(["sh", "-c", _keeper_script(base, timeout)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._heard: list[str] = []
        self._partial = ""

    def _hear(self, word: str, restore: subprocess.Popen[str], timeout: float) -> bool:
        """Wait for the keeper to say `word`: True when it did, False when the restore command
        ended first; PodmanError when the keeper timed out, ended, or on our own timeout."""
        assert self._keeper.stdout is not None
        fd = self._keeper.stdout.fileno()
        deadline = time.monotonic() + timeout + 5
        while word not in self._heard:
            if select.select([fd], [], [], 0.0005)[0]:
                chunk = os.read(fd, 4096)       # raw reads: a buffered readline would hide lines
                if chunk:
                    self._partial += chunk.decode()
                    *lines, self._partial = self._partial.split("\n")
                    for line in filter(None, (x.strip() for x in lines)):
                        self._heard.append(line)
                        if line in (UNREACHED, MISSED):
                            why = ("the restore never reached its gate" if line == UNREACHED else
                                   "the restore did not resume its tasks in time")
                            raise PodmanError(f"machine {self.machine.name!r}: {why} ({self.path})")
                    continue
                err = self._keeper.stderr.read().decode().strip() if self._keeper.stderr else ""
                raise PodmanError(f"machine {self.machine.name!r}: the gate's keeper ended "
                                  f"(exit {self._keeper.wait()}) {err}".strip())
            if restore.poll() is not None:
                return False
            if time.monotonic() > deadline:
                raise PodmanError(f"machine {self.machine.name!r}: no word from the restore gate "
                                  f"{self.path} within {timeout:.0f} s")
        return True

    def wait_reached(self, restore: subprocess.Popen[str], timeout: float = 30.0) -> None:
        """Return once the restore waits at the gate there; PodmanError when it ended first."""
        if not self._hear("reached", restore, timeout):
            err = (restore.stderr.read() if restore.stderr else "").strip()
            raise PodmanError(f"machine {self.machine.name!r}: the staged restore ended (exit "
                              f"{restore.returncode}) before reaching its gate: {err}")

    def answer(self, verdict: str, restore: subprocess.Popen[str], timeout: float = 30.0) -> None:
        """Hand `verdict` to the keeper. GO returns at once (`wait_resumed` hears the rest); any
        other verdict is waited for here."""
        assert self._keeper.stdin is not None
        try:
            self._keeper.stdin.write(f"{verdict}\n".encode())
            self._keeper.stdin.flush()
        except BrokenPipeError as exc:
            raise PodmanError(f"machine {self.machine.name!r}: the gate's keeper is gone "
                              f"(exit {self._keeper.wait()}); the verdict could not be given") from exc
        self.answered = True
        if verdict != GO:
            self._hear("answered", restore, timeout)

    def wait_resumed(self, restore: subprocess.Popen[str], timeout: float = 30.0) -> bool:
        """After GO: True once CRIU resumed the tasks there, False when the restore command ended
        first (its result says how); PodmanError when the gate was never reached or on timeout."""
        return self._hear("resumed", restore, timeout)

    def drop(self) -> None:
        """End the keeper here only (its machine does not answer): the keeper's end there calls
        the restore off when its session goes; `p4cf down` removes the gate's files later."""
        if self._keeper.poll() is None:
            self._keeper.kill()
        self._keeper.wait()

    def close(self) -> None:
        """End the keeper; remove the FIFO and side files there (never raises: also used while
        rolling back)."""
        if self._keeper.poll() is None:
            self._keeper.kill()
        self._keeper.wait()
        try:
            self.machine.run(["sh", "-c", f"rm -f {self.path} {self.path}.*"], check=False)
        except Exception:  # an unreachable machine: `p4cf down` removes them later
            pass


def abort_remote_gates(machine: Machine, owner: str) -> list[str]:
    """Call off lab `owner`'s restores still waiting at a gate on `machine` and remove the gates."""
    script = (f"cd {GATES_DIR} 2>/dev/null || exit 0\n"
              "for f in *.owner; do [ -e \"$f\" ] || continue\n"
              f"  [ \"$(cat \"$f\")\" = {shlex.quote(owner)} ] || continue\n"
              "  id=${f%.owner}; timeout 2 sh -c \"echo abort > $id\" 2>/dev/null\n"
              "  rm -f \"$id\" \"$id\".*; echo \"$id\"\n"
              "done\n")
    return machine.run(["sh", "-c", script], check=False).stdout.split()
