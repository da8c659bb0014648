"""Running the host tools (`ip`, `nsenter`, `ethtool`, `nft`) with errors that say what failed.

Why: wiring and isolation shell out to iproute2 and nftables (the images have no
tools, so pod namespaces are configured from outside with nsenter); one runner
gives every failure the same shape, a PodmanError-like message with stderr.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Sequence

from p4cf_kit.errors import KitError, PrerequisiteError


class HostToolError(KitError):
    """A host networking command (ip, nft, ethtool, nsenter) failed; carries its stderr."""

    def __init__(self, message: str, command: Sequence[str], stderr: str = "") -> None:
        super().__init__(message)
        self.command = list(command)
        self.stderr = stderr


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        raise PrerequisiteError(f"`{name}` is not installed: run `make setup` (apt-get install iproute2 nftables ethtool util-linux)")
    return path


def run(args: Sequence[str], check: bool = True, input: str | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a host command; raise HostToolError naming the command when it fails and `check`."""
    cmd = [tool(args[0]), *args[1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise HostToolError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): "
                            f"{(proc.stderr or proc.stdout).strip()}", cmd, proc.stderr)
    return proc


def in_netns(netns_path: str, args: Sequence[str], check: bool = True, input: str | None = None,
             ) -> subprocess.CompletedProcess[str]:
    """Run a host command inside the network namespace at `netns_path` (nsenter --net)."""
    return run(["nsenter", f"--net={netns_path}", tool(args[0]), *args[1:]], check=check, input=input)


def netns_path(name: str) -> str:
    """Path of a named netns (`ip netns add` makes it under /run/netns)."""
    return f"/run/netns/{name}"
