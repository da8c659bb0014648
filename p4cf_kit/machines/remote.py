"""A machine reached over SSH: Podman's REST API through a forwarded socket, host commands
through the same multiplexed connection. Nothing of the kit is installed there."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from p4cf_kit.errors import HostToolError, PodmanError, PrerequisiteError
from p4cf_kit.machines.machine import Machine
from p4cf_kit.machines.ssh import PodmanUrl, SshConnection, SshTarget
from p4cf_kit.podman.conf import podman_env
from p4cf_kit.podman.runner import podman_binary


class RemoteMachine(Machine):
    """Machine `name` at `url` (ssh://USER@HOST:PORT/podman.sock), logged into with `identity`."""

    def __init__(self, name: str, url: PodmanUrl, identity: Path, known_hosts: Path | None = None,
                 transfer: str = "tcp") -> None:
        self.name = name
        self.transfer = transfer
        self.url = url
        self.ssh = SshConnection(name, SshTarget(url.user, url.host, url.port, identity, known_hosts))
        self._socket: Path | None = None
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return self.url.host

    def answers(self, timeout: float = 2.0) -> bool:
        """Whether the machine's sshd greets within `timeout` (its "SSH-" banner, not just a TCP
        connection: a proxy on the way may accept any connection): a quick look before work that
        would otherwise wait out SSH's own timeouts on a machine that is gone."""
        try:
            with socket.create_connection((self.url.host, self.url.port), timeout=timeout) as conn:
                conn.settimeout(timeout)
                return conn.recv(4) == b"SSH-"
        except OSError:
            return False

    def peer_address(self) -> str:
        """From SSH's own record of the session (SSH_CONNECTION: client address first)."""
        out = self.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout.split()
        if not out:
            raise PrerequisiteError(f"machine {self.name!r}: sshd did not say where the kit connects from")
        return out[0]

    def _podman_socket(self) -> Path:
        """The local end of the forward to the machine's Podman socket, (re)made when dead."""
        with self._lock:
            if self._socket is not None and _accepts(self._socket):
                return self._socket
            self._socket = self.ssh.forward_socket(self.url.socket)
            if not _accepts(self._socket):
                raise PrerequisiteError(
                    f"machine {self.name!r}: nothing answers on its Podman socket {self.url.socket}; "
                    "start the service there (`systemctl enable --now podman.socket`, or "
                    f"`podman system service --time=0 unix://{self.url.socket}`)")
            return self._socket

    def podman(self, *args: str, check: bool = True, timeout: float | None = 120,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [podman_binary(), "--url", f"unix://{self._podman_socket()}", *args]
        try:
            proc = subprocess.run(cmd, env=podman_env(), capture_output=True, text=True,
                                  timeout=timeout, input=input)
        except subprocess.TimeoutExpired as exc:
            raise PodmanError(f"machine {self.name!r}: `podman {' '.join(args)}` did not finish within "
                              f"{timeout} s", cmd) from exc
        if check and proc.returncode != 0:
            text = (proc.stderr or proc.stdout).strip()
            raise PodmanError(f"machine {self.name!r}: `podman {' '.join(args)}` failed "
                              f"(exit {proc.returncode}): {text}", cmd, proc.stderr)
        return proc

    def podman_popen(self, *args: str, stdin: int | None = None) -> subprocess.Popen[bytes]:
        """Start a remote podman command without waiting (binary pipes), e.g. `load`."""
        cmd = [podman_binary(), "--url", f"unix://{self._podman_socket()}", *args]
        return subprocess.Popen(cmd, env=podman_env(), stdin=stdin, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    def podman_start(self, *args: str) -> subprocess.Popen[str]:
        """Start a remote podman command without waiting, text pipes (e.g. a staged restore)."""
        cmd = [podman_binary(), "--url", f"unix://{self._podman_socket()}", *args]
        return subprocess.Popen(cmd, env=podman_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def popen(self, args: Sequence[str], stdin: int | None = None, stdout: int | None = None,
              ) -> subprocess.Popen[bytes]:
        """Start a host command on the machine without waiting (a stream over SSH)."""
        return self.ssh.popen(args, stdin=stdin, stdout=stdout)

    def run(self, args: Sequence[str], check: bool = True, input: str | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        proc = self.ssh.run(args, input=input, timeout=timeout)
        if proc.returncode == 255:
            raise PrerequisiteError(self.ssh.explain(proc.stderr))
        if check and proc.returncode != 0:
            raise HostToolError(f"machine {self.name!r}: `{' '.join(args)}` failed (exit {proc.returncode}): "
                                f"{(proc.stderr or proc.stdout).strip()}", list(args), proc.stderr)
        return proc

    def close(self) -> None:
        from p4cf_kit.machines.runtime_files import forget
        self.ssh.close()
        self._socket = None
        forget(self)


def _accepts(path: Path) -> bool:
    """True when a unix socket at `path` accepts a connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False
