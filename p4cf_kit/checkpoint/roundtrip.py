"""A live end-to-end check: checkpoint and restore a container that holds an established
TCP connection, and show the connection (and the process state behind it) survived.

Why: `criu check` only probes kernel features; this exercises the whole chain the
migration uses (Podman -> runc -> CRIU with `--tcp-established`, a pod on a kit network)
on this very machine. `p4cf doctor --deep` runs it. Everything it creates is named
`p4cf-ckpt-<id>-*`, labelled `p4cf=1`, and removed again, also on failure.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from p4cf_kit.checkpoint.criu import criu_version, require_criu, version_text
from p4cf_kit.errors import KitError
from p4cf_kit.labels import LABEL, LABEL_KEY, NAME_PREFIX
from p4cf_kit.podman.images import BASE_REF, inspect_image
from p4cf_kit.podman.runner import podman

PORT = 7000

# The server: counts request lines per connection, so a reply after restore proves the
# same process memory (not a fresh server) answered on the same TCP connection.
_SERVER = f"""
import socket
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", {PORT})); srv.listen(4)
while True:
    conn, _ = srv.accept(); count = 0; buf = b""
    while True:
        data = conn.recv(4096)
        if not data:
            break
        buf += data
        while b"\\n" in buf:
            line, buf = buf.split(b"\\n", 1); count += 1
            conn.sendall(b"%d %s\\n" % (count, line))
    conn.close()
"""


@dataclass(frozen=True)
class RoundtripResult:
    """Outcome of `tcp_checkpoint_roundtrip`; timings in seconds by phase; `run_id` is in the
    names (`p4cf-ckpt-<run_id>-*`) and the label `p4cf.run` of what it created."""

    ok: bool
    detail: str
    timings: dict[str, float] = field(default_factory=dict)
    criu_version: str = ""
    run_id: str = ""


class _Step(KitError):
    """A roundtrip phase failed; `phase` names it for the result's detail."""

    def __init__(self, phase: str, message: str) -> None:
        super().__init__(f"{phase}: {message}")
        self.phase = phase


def _exchange(conn: socket.socket, line: bytes, timeout: float) -> bytes:
    conn.settimeout(timeout)
    conn.sendall(line + b"\n")
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("server closed the connection")
        reply += chunk
    return reply.rstrip(b"\n")


def _connect(address: str, deadline: float) -> socket.socket:
    last: OSError | None = None
    while time.monotonic() < deadline:
        try:
            return socket.create_connection((address, PORT), timeout=2)
        except OSError as exc:
            last = exc
            time.sleep(0.1)
    raise _Step("connect", f"no TCP connection to {address}:{PORT} ({last})")


def _pod_address(pod: str, network: str) -> str:
    infra = podman("pod", "inspect", "--format", "{{.InfraContainerID}}", pod).stdout.strip()
    nets = json.loads(podman("inspect", "--format", "{{json .NetworkSettings.Networks}}", infra).stdout)
    address: str = (nets.get(network) or {}).get("IPAddress", "")
    if not address:
        raise _Step("setup", f"pod {pod} has no address on {network}")
    return address


def _expect(conn: socket.socket, phase: str, line: bytes, count: int, timeout: float) -> None:
    try:
        reply = _exchange(conn, line, timeout)
    except OSError as exc:
        raise _Step(phase, f"the connection did not answer ({exc})") from exc
    want = b"%d %s" % (count, line)
    if reply != want:
        raise _Step(phase, f"reply {reply!r}, expected {want!r}")


def _cleanup(pod: str, network: str) -> None:
    podman("pod", "rm", "--force", "--time", "0", pod, check=False, timeout=60)
    podman("network", "rm", "--force", network, check=False, timeout=60)


def tcp_checkpoint_roundtrip(image: str = BASE_REF, export_to: Path | None = None,
                             timeout: float = 60.0) -> RoundtripResult:
    """Checkpoint and restore (`--tcp-established`) a server container in a kit pod while
    this process holds an established TCP connection to it; ok when the same connection
    answers afterwards with the server's counter continuing.

    `image` needs python3 (the kit's base image by default). `export_to`, if given, also
    receives the checkpoint as a tar archive (`podman container checkpoint --export`), e.g.
    to read its images with `criu_images`. Never raises for a failed phase: the result
    says which phase failed and why; all it created is removed before it returns.
    """
    timings: dict[str, float] = {}
    t_start = time.monotonic()
    try:
        criu = require_criu()
        version = version_text(criu_version(criu))
    except KitError as exc:
        return RoundtripResult(False, f"criu: {exc}", timings)
    if inspect_image(image) is None:
        return RoundtripResult(False, f"image {image} is not present; run `p4cf images build`", timings, version)
    run_id = secrets.token_hex(3)
    network, pod, name = (f"{NAME_PREFIX}ckpt-{run_id}-net", f"{NAME_PREFIX}ckpt-{run_id}-pod",
                          f"{NAME_PREFIX}ckpt-{run_id}-srv")
    labels = ["--label", LABEL, "--label", f"{LABEL_KEY}.run={run_id}"]
    conn: socket.socket | None = None
    try:
        t0 = time.monotonic()
        podman("network", "create", *labels, network)
        podman("pod", "create", *labels, "--name", pod, "--network", network)
        podman("run", "--detach", *labels, "--pod", pod, "--name", name, "--pull=never",
               image, "python3", "-c", _SERVER)
        address = _pod_address(pod, network)
        conn = _connect(address, time.monotonic() + timeout / 4)
        _expect(conn, "before checkpoint", b"hello", 1, timeout / 4)
        timings["setup"] = time.monotonic() - t0

        t0 = time.monotonic()
        extra = ["--keep", "--compress", "none", "--export", str(export_to)] if export_to is not None else []
        podman("container", "checkpoint", "--tcp-established", *extra, name, timeout=timeout)
        timings["checkpoint"] = time.monotonic() - t0

        t0 = time.monotonic()
        podman("container", "restore", "--tcp-established", name, timeout=timeout)
        timings["restore"] = time.monotonic() - t0

        _expect(conn, "after restore", b"again", 2, timeout / 4)
        timings["total"] = time.monotonic() - t_start
        return RoundtripResult(True, f"connection {address}:{PORT} survived checkpoint and restore; "
                               f"server state continued", timings, version, run_id)
    except _Step as exc:
        return RoundtripResult(False, str(exc), timings, version, run_id)
    except KitError as exc:  # a podman command failed; its stderr is in the message
        phase = next((p for p in ("checkpoint", "restore") if f"container {p}" in str(exc)), "setup")
        return RoundtripResult(False, f"{phase}: {exc}", timings, version, run_id)
    finally:
        if conn is not None:
            conn.close()
        t0 = time.monotonic()
        _cleanup(pod, network)
        timings["cleanup"] = time.monotonic() - t0  # same dict the result holds
