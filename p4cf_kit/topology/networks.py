"""One Podman network per host: `--internal` (no gateway on the bridge, no NAT or
masquerade rules from netavark) and without DNS, so the kernel has no route between
host networks and the switch's veth port is the only way out of each bridge."""

from __future__ import annotations

from p4cf_kit.config import HostConfig
from p4cf_kit.machines.machine import LOCAL, Machine
from p4cf_kit.topology.names import LabNames


def create_network(names: LabNames, host: HostConfig, machine: Machine = LOCAL) -> str:
    """Create host `host`'s network on `machine` and return the name of its Linux bridge there."""
    net = names.network(host.name)
    machine.podman("network", "create", "--internal", "--disable-dns", "--driver", "bridge",
           "--subnet", str(host.subnet), *names.labels("network"), net)
    return bridge_of(net, machine)


def bridge_of(network: str, machine: Machine = LOCAL) -> str:
    """The Linux bridge behind a Podman network (4.3 has no --interface-name, so ask)."""
    return bridges_of([network], machine)[0]


def bridges_of(networks: list[str], machine: Machine = LOCAL) -> list[str]:
    """The Linux bridges behind these Podman networks, in one `network inspect`."""
    if not networks:
        return []
    return [str(i["network_interface"]) for i in machine.podman_json("network", "inspect", *networks)
            if i.get("network_interface")]
