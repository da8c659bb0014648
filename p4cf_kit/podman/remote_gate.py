"""The restore gate of a landing container on another machine, driven over its SSH connection.

Same protocol as `restore_gate.RestoreGate` (a FIFO GATES_DIR/ID read by the gated runc there,
side files .owner, .wait, .resumed), same methods, so a staged restore is staged the same way
wherever it lands. What differs is the cost of a look: every check on the other machine is an
SSH round trip, so opening the gate is one command that writes the verdict and then waits
there, in a tight local loop, for CRIU's "resumed" marker; the kit only waits for that command.
"""

from __future__ import annotations

import shlex
import subprocess
import time

from p4cf_kit.errors import PodmanError
from p4cf_kit.machines.machine import Machine
from p4cf_kit.podman.restore_gate import GATES_DIR, GO

GATE_UNREACHED, RESUME_MISSED = 3, 4  # exit codes of the waiting command


class RemoteGate:
    """The FIFO one staged restore on `machine` waits on; create before starting the restore."""

    def __init__(self, machine: Machine, container_id: str, owner: str) -> None:
        self.machine = machine
        base = f"{GATES_DIR}/{container_id}"
        self.path, self.resumed_marker = base, f"{base}.resumed"
        self.answered = False
        self._waiter: subprocess.Popen[bytes] | None = None
        machine.run(["sh", "-c", f"mkdir -p {GATES_DIR} && rm -f {base} {base}.* && mkfifo -m 600 {base} "
                     f"&& printf %s {shlex.quote(owner)} > {base}.owner && : > {base}.wait"])

    def _script(self, verdict: str, timeout: float) -> str:
        t = max(1, int(timeout))
        write = f"timeout {t} sh -c 'echo {verdict} > {self.path}' || exit {GATE_UNREACHED}"
        if verdict != GO:
            return write
        return (f"{write}\nend=$(( $(date +%s) + {t} ))\n"
                f"until [ -e {self.resumed_marker} ]; do [ $(date +%s) -ge $end ] && exit {RESUME_MISSED}; "
                "sleep 0.001; done\n")

    def answer(self, verdict: str, restore: subprocess.Popen[str], timeout: float = 30.0) -> None:
        """Write `verdict` to the waiting restore. GO returns at once: the same command then waits
        for the resume, which `wait_resumed` collects; any other verdict is waited for here."""
        self._waiter = self.machine.popen(["sh", "-c", self._script(verdict, timeout)])
        self.answered = True
        if verdict != GO:
            self._waiter.wait(timeout=timeout + 10)

    def wait_resumed(self, restore: subprocess.Popen[str], timeout: float = 30.0) -> bool:
        """After GO: True once CRIU resumed the tasks there, False when the restore command ended
        first (its result says how); PodmanError when the gate was never reached or on timeout."""
        assert self._waiter is not None, "answer(GO) first"
        deadline = time.monotonic() + timeout + 5
        while True:
            code = self._waiter.poll()
            if code == 0:
                return True
            if restore.poll() is not None:
                return False
            if code is not None:
                why = ("the restore never reached its gate" if code == GATE_UNREACHED else
                       "the restore did not resume its tasks in time")
                raise PodmanError(f"machine {self.machine.name!r}: {why} ({self.path})")
            if time.monotonic() > deadline:
                raise PodmanError(f"machine {self.machine.name!r}: the restore did not resume within {timeout:.0f} s")
            time.sleep(0.0005)

    def close(self) -> None:
        """Remove the FIFO and side files there (never raises: also used while rolling back)."""
        if self._waiter is not None and self._waiter.poll() is None:
            self._waiter.kill()
            self._waiter.wait()
        try:
            self.machine.run(["sh", "-c", f"rm -f {self.path} {self.path}.*"], check=False)
        except Exception:  # an unreachable machine: `p4cf down` removes them later
            pass


def abort_remote_gates(machine: Machine, owner: str) -> list[str]:
    """Call off lab `owner`'s restores still waiting at a gate on `machine` and remove the gates."""
    script = (f"cd {GATES_DIR} 2>/dev/null || exit 0\n"
              "for f in *.owner; do [ -e \"$f\" ] || continue\n"
              f"  [ \"$(cat \"$f\")\" = {shlex.quote(owner)} ] || continue\n"
              "  id=${f%.owner}; timeout 2 sh -c \"echo abort > $id\" 2>/dev/null; rm -f \"$id\" \"$id\".*; echo \"$id\"\n"
              "done\n")
    return machine.run(["sh", "-c", script], check=False).stdout.split()
