"""Running the `podman` CLI with the kit's configuration.

The CLI (not the REST API) is used for what the API of Podman 4.3 lacks or does
differently: checkpoint/restore options (`--tcp-established`, `--print-stats`), a
per-container OCI runtime, pods with static addresses. `podman_popen` + `finish` run a
command beside other work (a migration's staged restore). Every call gets the kit's
CONTAINERS_CONF; a failure raises PodmanError carrying the command and stderr.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

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
        raise _timed_out(cmd, timeout) from exc
    if check and proc.returncode != 0:
        raise _failed(cmd, proc.returncode, proc.stdout, proc.stderr)
    return proc


def _timed_out(cmd: list[str], timeout: float | None) -> PodmanError:
    return PodmanError(f"`{' '.join(cmd)}` did not finish within {timeout} s", cmd)


def _failed(cmd: list[str], code: int, out: str, err: str) -> PodmanError:
    text = (err or "").strip() or (out or "").strip()
    return PodmanError(f"`{' '.join(cmd)}` failed (exit {code}): {text}", cmd, err or "")


def podman_json(*args: str, timeout: float | None = 120) -> Any:
    """Run a podman command that prints JSON (`--format json`) and parse it."""
    out = podman(*args, timeout=timeout).stdout.strip()
    return json.loads(out) if out else []


def podman_lines(args: Sequence[str], timeout: float | None = 60) -> list[str]:
    """Run a podman command and return its non-empty output lines."""
    return [line for line in podman(*args, timeout=timeout).stdout.splitlines() if line.strip()]


def podman_popen(*args: str, via: Sequence[str] = ()) -> subprocess.Popen[str]:
    """Start `podman ARGS...` with the kit's configuration without waiting (text pipes for
    stdout and stderr); for work that overlaps other work, like a staged restore. `via` is a
    command that execs it (a migration's: in an idle cgroup, podman/idle_cpu.py)."""
    return subprocess.Popen([*via, podman_binary(), *args], env=podman_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout: float | None = 120) -> subprocess.CompletedProcess[str]:
    """Wait for a `podman_popen` process; PodmanError (with stderr) on failure or timeout."""
    cmd = [str(arg) for arg in proc.args] if isinstance(proc.args, list) else [str(proc.args)]
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise _timed_out(cmd, timeout) from exc
    if proc.returncode != 0:
        raise _failed(cmd, proc.returncode, out, err)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
