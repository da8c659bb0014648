"""SSH to a lab machine: one multiplexed connection per machine, host keys always checked.

Why a control master: a lab bring-up sends dozens of commands to each machine, and a new
SSH handshake costs about a third of a second; commands multiplexed over one connection
cost milliseconds. The same connection forwards a local unix socket to the machine's
Podman socket, which is how Podman's own remote clients (podman-py, `podman --url ssh://`)
reach its REST API. Host keys are checked against a known_hosts file, never accepted
blindly: a wrong or unknown key is an error that says how to add it.
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from p4cf_kit.errors import ConfigError, PrerequisiteError

CONNECT_TIMEOUT_S = 5
PERSIST_S = 600


@dataclass(frozen=True)
class SshTarget:
    """Where and as whom to log in, with which key, trusting which host keys."""

    user: str
    host: str
    port: int
    identity: Path
    known_hosts: Path | None = None

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


@dataclass(frozen=True)
class PodmanUrl:
    """A Podman remote URL `ssh://USER@HOST:PORT/path/to/podman.sock`, split."""

    user: str
    host: str
    port: int
    socket: str


def parse_podman_url(url: str, where: str) -> PodmanUrl:
    """Split a Podman remote URL; ConfigError (naming `where`) when it is not one."""
    parts = urlsplit(url)
    example = "ssh://root@HOST:22/run/podman/podman.sock"
    if parts.scheme != "ssh" or not parts.hostname or not parts.path:
        raise ConfigError(f"{where} = {url!r} is not a Podman remote URL; use {example!r} or \"local\"")
    if parts.port is None:
        # Podman 4.3's own client fails on a URL without a port ("strconv.Atoi: parsing \"\""):
        # the kit asks for it too, so a config that works here works with `podman --url`.
        raise ConfigError(f"{where} = {url!r} has no port; write it out, e.g. {example!r}")
    return PodmanUrl(user=parts.username or "root", host=parts.hostname, port=parts.port,
                     socket=parts.path)


def control_dir() -> Path:
    """Where control sockets and forwarded Podman sockets live (short paths: unix sockets
    are limited to 108 bytes)."""
    path = Path("/run/p4cf/ssh")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


class SshConnection:
    """Commands and a Podman socket forward over one multiplexed SSH connection."""

    def __init__(self, name: str, target: SshTarget) -> None:
        self.name = name
        self.target = target
        # One master per machine *and* target: two configs naming the same machine differently
        # (another address, key or host-key file) must never share a connection.
        tag = hashlib.sha256(repr(target).encode()).hexdigest()[:8]
        self.control_path = control_dir() / f"{name}-{tag}.ctl"
        self.forward_path = control_dir() / f"{name}-{tag}.podman.sock"

    def base_args(self) -> list[str]:
        t = self.target
        args = ["ssh", "-i", str(t.identity), "-p", str(t.port),
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "PasswordAuthentication=no",
                "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", "-o", "StrictHostKeyChecking=yes",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
                "-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_path}",
                "-o", f"ControlPersist={PERSIST_S}", "-o", "LogLevel=ERROR"]
        if t.known_hosts is not None:
            args += ["-o", f"UserKnownHostsFile={t.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
        return args

    def _check_identity(self) -> None:
        key = self.target.identity
        if not key.is_file():
            raise ConfigError(f"machine {self.name!r}: SSH identity {key} does not exist; "
                              "point `identity` at a private key whose public key is in root's "
                              "authorized_keys there")
        if key.stat().st_mode & 0o077:
            raise ConfigError(f"machine {self.name!r}: SSH identity {key} is readable by others and "
                              f"ssh refuses it; chmod 600 {key}")

    def run(self, args: Sequence[str], input: str | None = None, timeout: float = 30,
            ) -> subprocess.CompletedProcess[str]:
        """Run `args` on the machine (quoted for its shell); returns the finished process.

        Exit status 255 is ssh's own failure (unreachable, refused key, unknown host key)."""
        self._check_identity()
        cmd = [*self.base_args(), self.target.user + "@" + self.target.host, "--", shlex.join(args)]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(cmd, 255, "", f"ssh timed out after {timeout:.0f} s")

    def popen(self, args: Sequence[str], stdin: int | None = None, stdout: int | None = None,
              ) -> subprocess.Popen[bytes]:
        """Start `args` on the machine without waiting (binary pipes as asked; stderr piped)."""
        self._check_identity()
        cmd = [*self.base_args(), self.target.user + "@" + self.target.host, "--", shlex.join(args)]
        return subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)

    def explain(self, stderr: str) -> str:
        """What an ssh failure means, with the fix."""
        t = self.target
        text = stderr.strip()
        if "Host key verification failed" in text or "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
            kh = t.known_hosts or Path("~/.ssh/known_hosts")
            return (f"machine {self.name!r} ({t.where}): its host key is not in {kh} or differs; check "
                    f"the key, then `ssh-keyscan -p {t.port} {t.host} >> {kh}`")
        if "Permission denied" in text:
            return (f"machine {self.name!r} ({t.where}) refused key {t.identity}; add its .pub to "
                    f"{t.user}'s ~/.ssh/authorized_keys there")
        if "timed out" in text or "No route" in text or "refused" in text or "unreachable" in text:
            return (f"machine {self.name!r} cannot be reached at {t.where} ({text}); check that it is "
                    "up, that sshd listens there and that this machine has a route to it")
        return f"machine {self.name!r} ({t.where}): ssh failed: {text}"

    def forward_socket(self, remote_socket: str) -> Path:
        """Forward a local unix socket to `remote_socket` over the control master; its path."""
        local = self.forward_path
        probe = self.run(["true"], timeout=CONNECT_TIMEOUT_S + 10)  # starts the master if needed
        if probe.returncode != 0:
            raise PrerequisiteError(self.explain(probe.stderr))
        spec = ["-L", f"{local}:{remote_socket}", self.target.user + "@" + self.target.host]
        # A master kept from an earlier command may still hold this forward with its socket
        # file gone: cancel it first (no-op otherwise), then forward anew.
        subprocess.run([*self.base_args(), "-O", "cancel", *spec], capture_output=True, timeout=15)
        local.unlink(missing_ok=True)
        cmd = [*self.base_args(), "-o", "StreamLocalBindUnlink=yes", "-O", "forward", *spec]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
        if proc.returncode != 0:
            raise PrerequisiteError(self.explain(proc.stderr))
        return local

    def close(self) -> None:
        """End the control master (and every forward on it), if one runs."""
        if not self.control_path.exists():
            return
        subprocess.run([*self.base_args(), "-O", "exit", self.target.user + "@" + self.target.host],
                       capture_output=True, text=True, timeout=10)
        for path in (self.control_path, self.forward_path):
            path.unlink(missing_ok=True)
