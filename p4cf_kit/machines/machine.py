"""The `Machine` interface: run Podman and host commands on one machine of a lab.

Why one interface: bring-up, clean-up and migration do the same steps on every machine
(create a network, start a pod, configure its namespace, remove what is labelled); only
the way commands reach the machine differs. `LocalMachine` runs them here, as the kit
always did; `p4cf_kit.machines.remote.RemoteMachine` runs them over SSH.
"""

from __future__ import annotations

import json
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from p4cf_kit import netns
from p4cf_kit.podman import runner

LOCAL_NAME = "local"


class Machine(ABC):
    """One machine of a lab: Podman and host commands, with the kit's error types."""

    name: str
    transfer: str = "tcp"   # how checkpoint images reach or leave it: "tcp" (direct) or "ssh"

    @property
    def is_local(self) -> bool:
        return False

    @property
    def address(self) -> str:
        """The address the kit reaches this machine at."""
        return "127.0.0.1"

    def peer_address(self) -> str:
        """This (the kit's) machine's address as seen from that machine."""
        return "127.0.0.1"

    @abstractmethod
    def podman(self, *args: str, check: bool = True, timeout: float | None = 120,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `podman ARGS...` against this machine's Podman; PodmanError on failure."""

    @abstractmethod
    def run(self, args: Sequence[str], check: bool = True, input: str | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a host command (`ip`, `nft`, ...) on this machine; HostToolError on failure."""

    @abstractmethod
    def popen(self, args: Sequence[str], stdin: int | None = None, stdout: int | None = None,
              ) -> subprocess.Popen[bytes]:
        """Start a host command without waiting (binary pipes as asked, stderr piped): streams."""

    def podman_json(self, *args: str, timeout: float | None = 120) -> Any:
        """Run a podman command that prints JSON and parse it."""
        out = self.podman(*args, timeout=timeout).stdout.strip()
        return json.loads(out) if out else []

    def in_netns(self, netns_path: str, args: Sequence[str], check: bool = True,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a host command inside the network namespace at `netns_path` on this machine."""
        return self.run(["nsenter", f"--net={netns_path}", *args], check=check, input=input)

    def sysctl_write(self, path: str, value: str) -> None:
        """Write one /proc/sys value on this machine, if the file exists."""
        self.run(["sh", "-c", f"[ ! -e {path} ] || echo {value} > {path}"], check=False)

    def sysctl_raise(self, path: str, minimum: int) -> None:
        """Raise one numeric /proc/sys value on this machine to `minimum` where it is lower (a
        higher one is left as it is), if the file exists and may be written."""
        self.run(["sh", "-c", f"[ ! -w {path} ] || [ $(cat {path}) -ge {minimum} ] || echo {minimum} > {path}"],
                 check=False)

    def close(self) -> None:  # noqa: B027  (optional hook: only a remote machine holds connections)
        """Release connections this object holds (nothing for the local machine)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class LocalMachine(Machine):
    """This machine: Podman with the kit's containers.conf, host tools run directly."""

    def __init__(self) -> None:
        self.name = LOCAL_NAME

    @property
    def is_local(self) -> bool:
        return True

    def podman(self, *args: str, check: bool = True, timeout: float | None = 120,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
        return runner.podman(*args, check=check, timeout=timeout, input=input)

    def run(self, args: Sequence[str], check: bool = True, input: str | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return netns.run(args, check=check, input=input, timeout=timeout)

    def in_netns(self, netns_path: str, args: Sequence[str], check: bool = True,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:
        return netns.run_in(netns_path, args, check=check, input=input)

    def popen(self, args: Sequence[str], stdin: int | None = None, stdout: int | None = None,
              ) -> subprocess.Popen[bytes]:
        return subprocess.Popen([netns.tool(args[0]), *args[1:]], stdin=stdin, stdout=stdout,
                                stderr=subprocess.PIPE)


LOCAL = LocalMachine()
