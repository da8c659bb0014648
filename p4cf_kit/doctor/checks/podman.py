"""Checks of Podman as the kit runs it: its version, runtime, the kit's containers.conf, the API.

Podman is always called with the kit's containers.conf, so these checks prove that file is
in effect rather than assume it.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from p4cf_kit.children import stop_child
from p4cf_kit.doctor.checks.probes import dotted, version_tuple
from p4cf_kit.doctor.checks.result import CheckResult
from p4cf_kit.errors import KitError
from p4cf_kit.labels import NAME_PREFIX
from p4cf_kit.paths import state_dir
from p4cf_kit.podman import conf
from p4cf_kit.podman.runner import podman, podman_binary

PODMAN_MIN = (4, 3)
SYSTEM_PODMAN_SOCKET = Path("/run/podman/podman.sock")


def check_podman_version() -> CheckResult:
    """Podman is installed and at least 4.3 (checkpoint/restore options the kit uses)."""
    fix = "run `make system` (apt-get install podman runc netavark); Podman >= 4.3 is needed"
    try:
        version = podman("version", "--format", "{{.Client.Version}}", timeout=60).stdout.strip()
    except KitError as exc:
        return CheckResult("podman", False, True, str(exc), fix)
    if version_tuple(version)[:2] < PODMAN_MIN:
        return CheckResult("podman", False, True, f"{version} is older than {dotted(PODMAN_MIN)}", fix)
    return CheckResult("podman", True, True, f"{version} at {podman_binary()}")


def _ping(sock: Path) -> bool:
    """The Podman API behind `sock` answers a ping through the `podman` Python package."""
    import podman as podman_py  # lazily: it is slow to import and only this check needs it

    try:
        with podman_py.PodmanClient(base_url=f"unix://{sock}", timeout=5) as client:
            return bool(client.ping())
    except Exception:
        return False


@contextmanager
def kit_podman_service(sock: Path, idle_seconds: int = 5) -> Iterator[subprocess.Popen[bytes]]:
    """A short-lived `podman system service` on a kit-owned socket, stopped by its pid.

    `--time` makes it exit on its own after `idle_seconds` idle, should the doctor die."""
    sock.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [podman_binary(), "system", "service", f"--time={idle_seconds}", f"unix://{sock}"],
        env=conf.podman_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        stop_child(proc)
        if proc.stderr is not None:
            proc.stderr.close()
        sock.unlink(missing_ok=True)


def check_podman_api() -> CheckResult:
    """Podman's REST API answers the `podman` Python package (optional: the kit uses the CLI
    where Podman 4.3's API falls short). Uses the system socket when it answers; otherwise
    starts a kit-owned service on a socket in the state directory, pings it, stops it."""
    name = "podman-api"
    fix = ("the kit starts its own service when it needs one; for a lasting one: "
           "`systemctl start podman.socket` (or `podman system service -t 0 &`)")
    if SYSTEM_PODMAN_SOCKET.exists() and _ping(SYSTEM_PODMAN_SOCKET):
        return CheckResult(name, True, False, f"system service answers at {SYSTEM_PODMAN_SOCKET}")
    sock = state_dir() / f"{NAME_PREFIX}doctor-{os.getpid()}.sock"
    try:
        with kit_podman_service(sock) as proc:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                    return CheckResult(name, False, False,
                                       f"`podman system service` exited ({proc.returncode}): {err}", fix)
                if sock.exists() and _ping(sock):
                    return CheckResult(name, True, False,
                                       f"answers on a kit-owned service ({sock}, stopped again); "
                                       f"no system service at {SYSTEM_PODMAN_SOCKET}")
                time.sleep(0.1)
    except KitError as exc:
        return CheckResult(name, False, False, str(exc), fix)
    return CheckResult(name, False, False, f"no answer on {sock} within 15 s", fix)


def check_oci_runtime() -> CheckResult:
    """With the kit's containers.conf, Podman uses runc (crun on Debian 12 has no CRIU)."""
    fix = f"apt-get install runc (the kit's containers.conf selects runtime = \"{conf.RUNTIME}\")"
    try:
        runtime = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60).stdout.strip()
    except KitError as exc:
        return CheckResult("oci-runtime", False, True, str(exc), fix)
    if runtime != conf.RUNTIME:
        return CheckResult("oci-runtime", False, True, f"Podman uses {runtime!r}, not {conf.RUNTIME}", fix)
    return CheckResult("oci-runtime", True, True, runtime)


def check_containers_conf() -> CheckResult:
    """Podman reads the kit's containers.conf (proved by its own debug log, not assumed)."""
    name = "containers-conf"
    fix = ("make the kit's state directory writable (or move it with P4CF_STATE_DIR), then see "
           "which files Podman reads: CONTAINERS_CONF=<that file> podman --log-level=debug info")
    try:
        path = conf.containers_conf_path()
        proc = podman("--log-level=debug", "info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60)
    except (KitError, OSError) as exc:
        return CheckResult(name, False, True, str(exc), fix)
    # logrus quotes the path and escapes the quotes: msg="Merged system config \"/path\""
    if re.search(r'Merged system config \\?"' + re.escape(str(path)) + r'\\?"', proc.stderr):
        return CheckResult(name, True, True, f"in effect: {path}")
    return CheckResult(name, False, True, f"Podman did not load {path}", fix)
