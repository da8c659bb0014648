"""The containers inside the host pods: a TCP server on each backend, the client in h1.

Idle hosts (migration targets) run nothing until a migration restores a server
there. Servers get their identity and port through the image's environment
(P4CF_HOST_ID, P4CF_PORT); readiness is polled from the pod's /proc/net/tcp, so
no fixed sleep and no tool inside the image is needed.
"""

from __future__ import annotations

import time
from pathlib import Path

from p4cf_kit.apps import containers as app
from p4cf_kit.apps.readiness import log_tail, wait_check
from p4cf_kit.checkpoint.runc_conf import annotation_args
from p4cf_kit.config import HostConfig, LabConfig
from p4cf_kit.errors import PodmanError
from p4cf_kit.machines.machine import LOCAL, Machine
from p4cf_kit.podman.restore_gate import gated_runtime_path
from p4cf_kit.podman.runner import podman
from p4cf_kit.topology.names import LabNames

CLIENT_LOG_DIR = app.CLIENT_LOG_DIR


# Podman hides these directories under empty read-only tmpfs mounts. CRIU dumps and restores
# every tmpfs with a tar + gzip process, which cost about 25 ms at each end of a migration, all
# of it downtime; the directories only hold read-only hardware information (/sys is read-only
# in the container anyway), so the backend servers see them (measured: CRIU's frozen time
# 120 -> 89 ms, its restore 115 -> 90 ms). Masked files (/proc/kcore and the like) stay masked.
UNMASKED_FOR_MIGRATION = ("/proc/acpi", "/proc/scsi", "/sys/firmware", "/sys/dev/block", "/sys/fs/selinux")


def _criu_options(machine: Machine) -> list[str]:
    """The annotation that points CRIU at the kit's options file on `machine`
    (checkpoint/runc_conf.py here, machines/runtime_files.py elsewhere)."""
    if machine.is_local:
        return annotation_args()
    from p4cf_kit.machines.runtime_files import ensure_runtime_files
    return ensure_runtime_files(machine).annotation_args()


def _server_args(cfg: LabConfig, names: LabNames, host: HostConfig, backend: str,
                 labels: dict[str, str] | None = None, machine: Machine = LOCAL) -> list[str]:
    """The container arguments of backend `backend`'s server placed in `host`'s pod, with the
    kit's CRIU options on its machine."""
    extra = [arg for key, value in (labels or {}).items() for arg in ("--label", f"{key}={value}")]
    return ["--pod", names.pod(host.name), "--name", names.server(host.name), *names.labels("backend"),
            *extra, *_criu_options(machine), "--security-opt", "unmask=" + ":".join(UNMASKED_FOR_MIGRATION),
            "-e", f"P4CF_HOST_ID={backend}", "-e", f"P4CF_PORT={cfg.port}",
            "-e", f"P4CF_BALLAST_MIB={cfg.backend.memory_mib}",
            app.server_image(cfg.workload, cfg.images.server), *app.server_command(cfg.workload)]


def start_server(cfg: LabConfig, names: LabNames, host: HostConfig, machine: Machine = LOCAL,
                 backend: str | None = None, labels: dict[str, str] | None = None) -> str:
    """Run the TCP server in `host`'s pod (on `machine`); returns the container name. It carries
    the kit's CRIU options (checkpoint/runc_conf.py), which its restored copies keep, and the
    kit's gated runtime (runc unless a migration asks for more: a lazy migration
    hands runc its page-server options through it, podman/restore_gate.py). `backend` and
    `labels`: a fresh copy of a backend that had moved (migration/rollback.py)."""
    args = _server_args(cfg, names, host, backend or host.name, labels, machine=machine)
    if machine.is_local:
        machine.podman("run", "-d", "--runtime", str(gated_runtime_path()), *args)
    else:   # created with the runtime by the machine's own podman, as a landing container (below)
        from p4cf_kit.machines.runtime_files import ensure_runtime_files
        cid = machine.run(["podman", "create", "--runtime", ensure_runtime_files(machine).runtime, *args],
                          timeout=120).stdout.strip()
        machine.podman("start", cid)
    return names.server(host.name)


def create_landing(cfg: LabConfig, names: LabNames, host: HostConfig, backend: str,
                   labels: dict[str, str], machine: Machine = LOCAL) -> str:
    """Create (never start) the container a migration restores backend `backend` into, in
    `host`'s pod, with the kit's gated runtime (podman/restore_gate.py; on another machine its
    copy there, machines/runtime_files.py); returns its ID.

    `podman container init` + `cleanup` give it the OCI spec a restore starts from, without
    running the server: its process comes from the checkpoint."""
    args = _server_args(cfg, names, host, backend, labels, machine=machine)
    if machine.is_local:
        cid = machine.podman("create", "--runtime", str(gated_runtime_path()), *args).stdout.strip()
    else:
        # Podman's REST API drops a container's runtime (fixed upstream only in 2026, podman
        # issue 28429): the machine's own podman, over SSH, creates it; the API does the rest.
        from p4cf_kit.machines.runtime_files import ensure_runtime_files
        runtime = ensure_runtime_files(machine).runtime
        cid = machine.run(["podman", "create", "--runtime", runtime, *args], timeout=120).stdout.strip()
    try:
        machine.podman("container", "init", cid)
        # `cleanup` is not offered by the remote client; `stop` of an initialized container
        # ends in the same state (exited, with its OCI spec written).
        machine.podman("container", "cleanup" if machine.is_local else "stop", cid)
    except PodmanError:
        machine.podman("rm", "-f", "-t", "0", cid, check=False)
        raise
    return cid


def listening(netns_path: str, port: int, machine: Machine = LOCAL) -> bool:
    """True when some socket in that netns listens on TCP `port` (read from /proc/net/tcp)."""
    text = machine.in_netns(netns_path, ["cat", "/proc/net/tcp"]).stdout
    want = f":{port:04X}"
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) > 3 and cols[1].endswith(want) and cols[3] == "0A":
            return True
    return False


def wait_listening(netns_path: str, port: int, what: str, timeout: float = 10.0,
                   machine: Machine = LOCAL) -> None:
    """Poll until `port` listens in the netns; PodmanError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while not listening(netns_path, port, machine):
        if time.monotonic() > deadline:
            tail = log_tail(what, machine)
            raise PodmanError(f"{what} does not listen on TCP {port} after {timeout:.0f} s, so no traffic is "
                              f"sent to it; its log ends with:\n{tail or '(empty)'}\nFix: make the application "
                              f"listen on 0.0.0.0:{port} (the lab's port; workload.port for a custom image)")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def wait_ready(cfg: LabConfig, names: LabNames, host: HostConfig, netns_path: str, timeout: float = 10.0,
               machine: Machine = LOCAL) -> None:
    """The backend in `host`'s pod is ready: the workload's own check passes (apps/readiness.py),
    then its port listens."""
    wait_check(cfg.workload, names.server(host.name), machine)
    wait_listening(netns_path, cfg.port, names.server(host.name), timeout=timeout, machine=machine)


def start_client(cfg: LabConfig, names: LabNames, host: HostConfig, log_dir: Path,
                 connections: int, rate: float, duration: float, extra: list[str] | None = None) -> str:
    """Run the workload's client in `host`'s pod against VIP:port; its CSV lands in `log_dir`."""
    name = names.client(host.name)
    image = app.client_image(cfg.workload, cfg.images.client)
    podman("run", "-d", "--pod", names.pod(host.name), "--name", name, *names.labels("client"),
           "-v", f"{log_dir}:{CLIENT_LOG_DIR}",
           *app.client_args(cfg.workload, str(cfg.vip), cfg.port, connections, rate, duration, image,
                            list(extra or [])))
    return name


def stop_container(name: str, timeout_s: int = 5) -> None:
    """Stop (SIGTERM, then kill after `timeout_s`) and remove a kit container; missing is fine."""
    podman("stop", "-t", str(timeout_s), name, check=False)
    podman("rm", "-f", "-t", "0", name, check=False)


def container_running(name: str, machine: Machine = LOCAL) -> bool:
    proc = machine.podman("inspect", "--type", "container", "--format", "{{.State.Running}}", name, check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "true"
