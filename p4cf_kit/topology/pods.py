"""One pod per host, holding the host's static IP and MAC in its infra container.

Why pods: the infra container keeps the network namespace (and so netavark's
bridge) alive while host containers come and go during migration, and
`podman container restore --pod` puts a restored container back into it.
"""

from __future__ import annotations

from dataclasses import dataclass

from p4cf_kit.config import HostConfig
from p4cf_kit.errors import PodmanError
from p4cf_kit.machines.machine import LOCAL, Machine
from p4cf_kit.topology.names import LabNames, host_role


@dataclass(frozen=True)
class PodNet:
    """Where a pod's network namespace is, for configuring it from outside."""

    pod_id: str
    infra_pid: int
    netns_path: str


def create_pod(names: LabNames, host: HostConfig, start: bool = True,
               machine: Machine = LOCAL) -> PodNet | None:
    """Create host `host`'s pod on its network; with `start`, start it and return its netns.

    `start=False` saves a Podman call when a container is run into the pod next: running a
    container starts the pod's infra container too (call `pod_net` afterwards)."""
    pod = names.pod(host.name)
    machine.podman("pod", "create", "--name", pod, *names.labels(host_role(host)),
           "--network", names.network(host.name), "--ip", str(host.ip), "--mac-address", host.mac,
           "--hostname", host.name)
    if not start:
        return None
    machine.podman("pod", "start", pod)
    return pod_net(names, host, machine)


def pod_net(names: LabNames, host: HostConfig, machine: Machine = LOCAL) -> PodNet:
    """Read a running pod's infra pid and netns path from Podman (paths as seen on `machine`)."""
    pod = names.pod(host.name)
    info = machine.podman_json("pod", "inspect", pod)
    info = info[0] if isinstance(info, list) else info
    infra = machine.podman_json("inspect", "--type", "container", info["InfraContainerID"])[0]
    pid = int(infra["State"]["Pid"])
    if pid <= 0:
        raise PodmanError(f"pod {pod} has no running infra container; run `p4cf down` and `p4cf up` again")
    sandbox = infra.get("NetworkSettings", {}).get("SandboxKey") or f"/proc/{pid}/ns/net"
    return PodNet(pod_id=str(info["Id"]), infra_pid=pid, netns_path=sandbox)
