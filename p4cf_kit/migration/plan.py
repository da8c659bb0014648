"""Checking a migration request against the running lab and resolving everything it needs.

Why before the first phase: a refused request must leave the lab untouched, and
everything that costs a Podman or switch round trip (pod IDs, netns paths, the
backend's identity, the pool) is looked up here, outside the timed phases.

Where a backend runs is read from Podman and the switch, never from memory: the
container of the backend on host hN is always named like the lab names hN's
server (`<prefix>hN-srv`), and the pool on the switch says which host IPs serve.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from p4cf_kit.config import HostConfig, LabConfig
from p4cf_kit.control.loadbalancer import NextHop
from p4cf_kit.errors import ConfigError, KitError
from p4cf_kit.machines.machine import LOCAL, Machine
from p4cf_kit.topology.names import LabNames
from p4cf_kit.topology.pods import PodNet, pod_net

HOST_ID_ENV = "P4CF_HOST_ID"
LOCATION_LABEL = "p4cf.location"   # host network the container runs on now
BACKEND_LABEL = "p4cf.backend"     # the backend's own id (its P4CF_HOST_ID), kept across moves


class LabLike(Protocol):
    """What migration needs of a Lab (the facade imports this room, not the other way)."""

    config: LabConfig
    names: LabNames

    def next_hop(self, host: str | HostConfig) -> NextHop: ...

    def pool(self, hosts: Sequence[str] | None = None) -> list[str]: ...

    def move_backend(self, which: str | int, mac: str, ip: str, port: int) -> int: ...

    def backend_slot(self, which: str | int) -> int: ...

    def move_slot(self, index: int, mac: str, ip: str, port: int) -> int: ...

    def machine_of(self, host: str | HostConfig) -> Machine: ...


@dataclass(frozen=True)
class MigrationPlan:
    """A checked request: hosts, containers, pods and where the source's images will be."""

    src: HostConfig
    dst: HostConfig
    backend: str            # the backend's id (P4CF_HOST_ID), e.g. h2 also when it runs on h4
    src_container: str
    dst_container: str
    src_pod: PodNet
    dst_pod: PodNet
    src_pid: int            # the source server's host PID: its exit says CRIU's dump is written
    src_images: Path        # the source container's checkpoint folder (Podman's, in place)
    src_hop: NextHop
    dst_hop: NextHop
    slot: int               # the backend's ecmp_nhop index, so the switch phase only writes
    src_machine: Machine = LOCAL
    dst_machine: Machine = LOCAL

    @property
    def across_machines(self) -> bool:
        return self.src_machine.name != self.dst_machine.name


def images_of(container: str, machine: Machine = LOCAL) -> Path:
    """Where Podman keeps `container`'s CRIU images (its checkpoint folder, a path on `machine`)."""
    static = machine.podman("inspect", "--type", "container", "--format", "{{.StaticDir}}",
                            container).stdout.strip()
    return Path(static) / "checkpoint"


def container_pid(container: str, machine: Machine = LOCAL) -> int:
    """The host PID of `container`'s main process (0 when it does not run)."""
    out = machine.podman("inspect", "--type", "container", "--format", "{{.State.Pid}}",
                         container).stdout.strip()
    return int(out or 0)


def container_state(name: str, machine: Machine = LOCAL) -> str | None:
    """Podman's state of container `name` (running, exited, ...), None when it does not exist."""
    proc = machine.podman("inspect", "--type", "container", "--format", "{{.State.Status}}", name,
                          check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def backend_id(container: str, machine: Machine = LOCAL) -> str:
    """The id a backend's server reports (its P4CF_HOST_ID), read from the container's config."""
    info = json.loads(machine.podman("inspect", "--type", "container", container).stdout)[0]
    labels = info.get("Config", {}).get("Labels") or {}
    if labels.get(BACKEND_LABEL):
        return str(labels[BACKEND_LABEL])
    for item in info.get("Config", {}).get("Env") or []:
        key, _, value = str(item).partition("=")
        if key == HOST_ID_ENV and value:
            return value
    raise KitError(f"{container} has no {HOST_ID_ENV} in its environment: not a kit backend")


def plan_migration(lab: LabLike, src: str, dst: str) -> MigrationPlan:
    """Check `src -> dst` (ConfigError saying why not) and resolve what the phases need."""
    cfg = lab.config
    if src == dst:
        raise ConfigError(f"cannot migrate {src} to itself; name another host as destination")
    src_host, dst_host = cfg.host(src), cfg.host(dst)   # ConfigError for unknown hosts
    for h, what in ((src_host, "source"), (dst_host, "destination")):
        if h.role == "client":
            raise ConfigError(f"{h.name} is the client host; it cannot be a migration {what}")
    pool = lab.pool()
    src_machine, dst_machine = lab.machine_of(src_host), lab.machine_of(dst_host)
    src_container, dst_container = lab.names.server(src), lab.names.server(dst)
    if src not in pool or container_state(src_container, src_machine) != "running":
        serving = ", ".join(pool) or "none"
        raise ConfigError(f"{src} does not run a backend (backends now on: {serving}); "
                          "migrate one of those")
    dst_state = container_state(dst_container, dst_machine)
    if dst in pool or dst_state == "running":
        idle = [h.name for h in cfg.hosts if h.name not in pool and h.role != "client"]
        raise ConfigError(f"{dst} already runs a backend; choose a host without one "
                          f"(idle: {', '.join(idle) or 'none'})")
    if dst_state is not None:   # an exited leftover record would block the name
        dst_machine.podman("rm", "-f", "-t", "0", dst_container, check=False)
    return MigrationPlan(
        src=src_host, dst=dst_host, backend=backend_id(src_container, src_machine),
        src_container=src_container, dst_container=dst_container,
        src_pod=pod_net(lab.names, src_host, src_machine), dst_pod=pod_net(lab.names, dst_host, dst_machine),
        src_pid=container_pid(src_container, src_machine), src_images=images_of(src_container, src_machine),
        src_hop=lab.next_hop(src_host), dst_hop=lab.next_hop(dst_host),
        slot=lab.backend_slot(str(src_host.ip)), src_machine=src_machine, dst_machine=dst_machine)
