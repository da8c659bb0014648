"""The switch processes the kit starts, for both launchers: spawning one with its log, what
/proc says about it, stopping it by pid.

The embedded switch and BMv2 must never signal a recycled pid, so they ask the same questions:
is the pid alive (a zombie is not), does its command line still name the switch, and reap it
when it is our child. A failed start quotes the end of its log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def alive(pid: int) -> bool:
    """True when `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def cmdline(pid: int) -> str:
    """The command line of `pid`, arguments joined by spaces; empty when it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def runs(pid: int | None, marker: str) -> bool:
    """True when `pid` is alive and its command line contains `marker` (so it is still ours);
    False for None (a remote switch's state: no process of ours)."""
    return pid is not None and alive(pid) and marker in cmdline(pid)


def reap(pid: int) -> None:
    """Collect `pid`'s exit status if it is our exited child; otherwise do nothing."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def log_tail(path: Path, lines: int = 15) -> str:
    """The last `lines` lines of a switch log, for an error message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def spawn(cmd: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `cmd` in a session of its own, output appended to `log_path` after a line naming it."""
    with open(log_path, "ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        return subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, env=env)


def _wait_gone(pid: int, deadline: float) -> bool:
    while alive(pid) and time.monotonic() < deadline:
        reap(pid)
        time.sleep(0.02)
    reap(pid)
    return not alive(pid)


def stop(pid: int | None, marker: str, grace: float = 3.0) -> bool:
    """SIGTERM `pid` if it still runs `marker`, SIGKILL after `grace` s; reap it if it is our
    child. True when it was running (never for None: no process of ours)."""
    if pid is None:
        return False
    if not runs(pid, marker):
        reap(pid)
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    if not _wait_gone(pid, time.monotonic() + grace) and runs(pid, marker):
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, time.monotonic() + 5)
    return True
