"""How the checks look at the machine: run a command, read a version, find a binary.

Shared by every group of checks, so each reports versions and command failures alike.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence


def version_tuple(text: str) -> tuple[int, ...]:
    """(4, 2, 1) from "4.2.1", "v4.2.1-rc1" or "Version: 4.2.1"; () when there is none."""
    match = re.search(r"(\d+(?:\.\d+)*)", text)
    return tuple(int(p) for p in match.group(1).split(".")) if match else ()


def dotted(version: tuple[int, ...]) -> str:
    """(4, 2, 1) as "4.2.1", for messages."""
    return ".".join(str(p) for p in version)


def run(cmd: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; never raises for a nonzero exit."""
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)


def output(proc: subprocess.CompletedProcess[str]) -> str:
    """The most telling line of a finished command's output (its last, stderr first)."""
    text = (proc.stderr.strip() or proc.stdout.strip())
    return text.splitlines()[-1] if text else f"exit status {proc.returncode}"


def resolve_binary(env_var: str, default: str) -> tuple[str | None, str]:
    """The binary named by `env_var` (a path or a name on PATH) or `default` on PATH.

    Returns (path or None, how it was looked up) so a failure can say which to fix."""
    wanted = os.environ.get(env_var) or default
    origin = f"{env_var}={wanted}" if os.environ.get(env_var) else f"`{default}` on PATH"
    if "/" in wanted:
        found = wanted if os.path.isfile(wanted) and os.access(wanted, os.X_OK) else None
        return found, origin
    return shutil.which(wanted), origin
