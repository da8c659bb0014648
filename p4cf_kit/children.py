"""Ending a child process the kit (or a test) started: ask, wait, then insist.

Why one place: a switch, a Podman service, a P4Runtime server under test all end the same
way, by their own pid (never by name): SIGTERM, a grace period, then SIGKILL, and always a
wait so no zombie is left. A helper that reads its stdin ends when that closes (settle).
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




def settle(proc: subprocess.Popen[Any] | None, grace: float = 5.0, *, drain: bool = False) -> None:
    """Let a child end by itself within `grace` seconds, else kill it; always reaped, its output
    and status unwanted. A helper reading its stdin (a watcher over SSH) is told to stop by
    closing that, and only waited for: an SSH session multiplexed over a master may leave its
    pipes open after it ended. `drain`: a local command still running (Podman tidying up after
    CRIU) may fill its output pipes, so they are read while it is waited for."""
    if proc is None or (drain and proc.poll() is not None):
        return
    if not drain and proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass
    try:
        proc.communicate(timeout=grace) if drain else proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate() if drain else proc.wait()
