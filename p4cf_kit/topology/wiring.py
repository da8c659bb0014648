"""Switch ports and host routing: how packets get from a host to the switch and back.

Switch port N is a veth pair: `<prefix>Nbr` enslaved to host network N's bridge in
the root netns, `<prefix>Nsw` (MAC = HostConfig.switch_mac) opened by the switch
with AF_PACKET. With `switch.netns` the sw ends live in the kit netns
`<prefix>s1`, which has no addresses, no forwarding and no IPv6: the kernel there
can neither route nor answer (no RSTs), so the switch is the only path.

Hosts are configured from outside (the images have no tools) by running the host's
`ip`/`ethtool` under `nsenter --net=<pod netns>`: a static neighbour for the
gateway address (.254, owned by nobody) with switch port N's MAC, routes to the
VIP and to every other host subnet via that gateway, IPv6 off. Checksum offload,
TSO/GSO and GRO are turned off on the host's eth0 and on both veth ends: an
AF_PACKET switch would otherwise see partial checksums and 64 KiB super-frames.
"""

from __future__ import annotations

from pathlib import Path

from p4cf_kit.config import HostConfig, LabConfig
from p4cf_kit.topology.commands import in_netns, netns_path, run
from p4cf_kit.topology.names import LabNames

OFFLOADS = ["tx", "off", "tso", "off", "gso", "off", "gro", "off"]


def _disable_ipv6_sysctls(ifaces: list[str]) -> str:
    return "".join(f"echo 1 > /proc/sys/net/ipv6/conf/{i}/disable_ipv6\n" for i in ifaces)


def disable_ipv6(iface: str) -> None:
    """Turn IPv6 off on one root-netns interface (no link-local, no MLD/RS noise)."""
    path = Path(f"/proc/sys/net/ipv6/conf/{iface}/disable_ipv6")
    if path.exists():
        path.write_text("1\n")


def create_switch_netns(names: LabNames) -> str:
    """Create the switch's kit netns (IPv6 and forwarding off, lo up); returns its path."""
    ns = names.switch_netns
    run(["ip", "netns", "add", ns])
    path = netns_path(ns)
    in_netns(path, ["sh", "-c",
                    _disable_ipv6_sysctls(["all", "default"])
                    + "echo 0 > /proc/sys/net/ipv4/ip_forward\nip link set lo up\n"])
    return path


def create_port(names: LabNames, host: HostConfig, in_switch_netns: bool) -> str:
    """Create switch port `host.port` (veth pair), sw end in the switch netns when asked; returns the sw end."""
    br, sw = names.bridge_port(host.port), names.switch_port(host.port)
    peer = ["peer", "name", sw, "address", host.switch_mac]
    if in_switch_netns:
        peer += ["netns", names.switch_netns]
    run(["ip", "link", "add", br, "type", "veth", *peer])
    disable_ipv6(br)
    run(["ethtool", "-K", br, *OFFLOADS], check=False)
    if in_switch_netns:
        in_netns(netns_path(names.switch_netns), ["sh", "-c",
                 f"ip link set {sw} up\nethtool -K {sw} {' '.join(OFFLOADS)} >/dev/null 2>&1 || true\n"])
    else:
        disable_ipv6(sw)
        # no IPv4 forwarding from the sw end either (nft drops it too; see isolation)
        Path(f"/proc/sys/net/ipv4/conf/{sw}/forwarding").write_text("0\n")
        run(["ethtool", "-K", sw, *OFFLOADS], check=False)
        run(["ip", "link", "set", sw, "up"])
    return sw


def attach_port(names: LabNames, host: HostConfig, bridge: str) -> None:
    """Enslave switch port `host.port`'s bridge end to the host network's bridge."""
    disable_ipv6(bridge)
    run(["ip", "link", "set", names.bridge_port(host.port), "master", bridge, "up"])


def host_routing_script(cfg: LabConfig, host: HostConfig) -> str:
    """The shell lines (run in the pod's netns) that make the switch this host's only way out."""
    lines = [_disable_ipv6_sysctls(["all", "default", "eth0"]).rstrip("\n"),
             f"ethtool -K eth0 {' '.join(OFFLOADS)} >/dev/null 2>&1 || true",
             f"ip neigh replace {host.gateway} lladdr {host.switch_mac} dev eth0 nud permanent",
             f"ip route replace {cfg.vip}/32 via {host.gateway} dev eth0 onlink"]
    for other in cfg.hosts:
        if other.index != host.index:
            lines.append(f"ip route replace {other.subnet} via {host.gateway} dev eth0 onlink")
    return "set -e\n" + "\n".join(lines) + "\n"


def configure_host(cfg: LabConfig, host: HostConfig, pod_netns: str) -> None:
    """Apply `host_routing_script` inside the pod's network namespace."""
    in_netns(pod_netns, ["sh", "-c", host_routing_script(cfg, host)])


def quiet_bridge_members(bridge: str) -> None:
    """IPv6 off on every port of `bridge` (netavark's host-side veths appear at pod start)."""
    out = run(["ip", "-o", "link", "show", "master", bridge], check=False).stdout
    for line in out.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            disable_ipv6(parts[1].strip().split("@")[0])
