"""Ending a child process the kit (or a test) started: ask, wait, then insist.

Why one place: a switch, a Podman service, a P4Runtime server under test all end the same
way, by their own pid (never by name): SIGTERM, a grace period, then SIGKILL, and always a
wait so no zombie is left.
"""

from __future__ import annotations

import subprocess
from typing import Any

GRACE_S = 10.0


def stop_child(proc: subprocess.Popen[Any], grace: float = GRACE_S) -> int:
    """Terminate `proc` if it still runs, kill it after `grace` seconds; its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()
