"""What /proc says about a switch process the kit started, for both switch launchers.

The embedded switch and BMv2 each keep a pid file and must never signal a recycled pid, so they
ask the same questions: is the pid alive (a zombie is not), does its command line still name
the switch, and reap it when it is our child. A failed start quotes the end of its log.
"""

from __future__ import annotations

import os
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


def runs(pid: int, marker: str) -> bool:
    """True when `pid` is alive and its command line contains `marker` (so it is still ours)."""
    return alive(pid) and marker in cmdline(pid)


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
