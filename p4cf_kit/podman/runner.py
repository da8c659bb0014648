"""Running the `podman` CLI with the kit's configuration.

The CLI (not the REST API) is used for what the API of Podman 4.3 lacks or does
differently: checkpoint/restore options (`--tcp-established`, `--pod`,
`--ignore-static-ip`), pods with static addresses. Every call gets the kit's
CONTAINERS_CONF; a failure raises PodmanError carrying the command and stderr.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any, Sequence

from p4cf_kit.errors import PodmanError, PrerequisiteError
from p4cf_kit.podman.conf import podman_env


def podman_binary() -> str:
    path = shutil.which("podman")
    if path is None:
        raise PrerequisiteError("podman is not installed: run `make setup` (or apt-get install podman runc netavark)")
    return path


def podman(*args: str, check: bool = True, timeout: float | None = 120,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `podman ARGS...` with the kit's configuration and return the finished process."""
    cmd = [podman_binary(), *args]
    try:
        proc = subprocess.run(cmd, env=podman_env(), capture_output=True, text=True,
                              timeout=timeout, input=input)
    except subprocess.TimeoutExpired as exc:
        raise PodmanError(f"`{' '.join(cmd)}` did not finish within {timeout} s", cmd) from exc
    if check and proc.returncode != 0:
        err = proc.stderr.strip() or proc.stdout.strip()
        raise PodmanError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {err}", cmd, proc.stderr)
    return proc


def podman_json(*args: str, timeout: float | None = 120) -> Any:
    """Run a podman command that prints JSON (`--format json`) and parse it."""
    out = podman(*args, timeout=timeout).stdout.strip()
    return json.loads(out) if out else []


def podman_lines(args: Sequence[str], timeout: float | None = 60) -> list[str]:
    """Run a podman command and return its non-empty output lines."""
    return [line for line in podman(*args, timeout=timeout).stdout.splitlines() if line.strip()]
