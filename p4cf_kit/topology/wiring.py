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
from p4cf_kit.errors import ConfigError
from p4cf_kit.machines.machine import LOCAL, Machine
from p4cf_kit.netns import netns_path, run, run_in
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
    run_in(path, ["sh", "-c",
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
        run_in(netns_path(names.switch_netns), ["sh", "-c",
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


def configure_host(cfg: LabConfig, host: HostConfig, pod_netns: str, machine: Machine = LOCAL) -> None:
    """Apply `host_routing_script` inside the pod's network namespace (on `machine`)."""
    machine.in_netns(pod_netns, ["sh", "-c", host_routing_script(cfg, host)])


def quiet_bridge_members(bridge: str, machine: Machine = LOCAL) -> None:
    """IPv6 off on every port of `bridge` (netavark's host-side veths appear at pod start)."""
    out = machine.run(["ip", "-o", "link", "show", "master", bridge], check=False).stdout
    ifaces = [parts[1].strip().split("@")[0] for line in out.splitlines()
              if len(parts := line.split(":")) > 1]
    if machine.is_local:
        for iface in ifaces:
            disable_ipv6(iface)
    elif ifaces:
        machine.run(["sh", "-c", _disable_ipv6_sysctls(ifaces)], check=False)


def attach_uplink(host: HostConfig, bridge: str, machine: Machine) -> None:
    """On a remote machine: enslave the host's uplink (its NIC toward the switch) to the host
    network's bridge, offloads off as on every switch-facing link, IPv6 off on both."""
    u = host.uplink
    machine.run(["sh", "-c", _disable_ipv6_sysctls([bridge, u])
                 + f"ethtool -K {u} {' '.join(OFFLOADS)} >/dev/null 2>&1 || true\n"
                 + f"ip link set {u} master {bridge} up\n"])


def take_cable(names: LabNames, host: HostConfig, iface: str) -> str:
    """Make `iface`, the NIC cabled to a remote host's uplink, switch port `host.port`: moved into
    the switch netns with the port's MAC and offloads off; `cleanup` hands it back on `down`."""
    if not Path(f"/sys/class/net/{iface}").exists():
        if Path(f"/run/netns/{names.switch_netns}").exists() and run_in(
                netns_path(names.switch_netns), ["ip", "link", "show", iface], check=False).returncode == 0:
            run(["ip", "-n", names.switch_netns, "link", "set", iface, "netns", "1"])
        else:
            raise ConfigError(f"switch port {host.port} ({host.name} on machine {host.machine!r}): interface "
                              f"{iface!r} does not exist on the switch's machine; check [switch.ports]")
    run(["ip", "link", "set", iface, "down"])
    run(["ip", "link", "set", iface, "address", host.switch_mac, "netns", names.switch_netns])
    run_in(netns_path(names.switch_netns), ["sh", "-c",
             f"ip link set {iface} up\nethtool -K {iface} {' '.join(OFFLOADS)} >/dev/null 2>&1 || true\n"])
    return iface


def release_cables(names: LabNames) -> list[str]:
    """Move every interface the switch netns holds but the lab did not create (the cables to
    other machines) back to the root netns, so deleting the netns never destroys them."""
    ns = names.switch_netns
    if not Path(f"/run/netns/{ns}").exists():
        return []
    out = run(["ip", "-n", ns, "-o", "link", "show"], check=False).stdout
    moved = []
    for line in out.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        iface = parts[1].strip().split("@")[0]
        if iface == "lo" or names.iface_re.match(iface):
            continue
        if run(["ip", "-n", ns, "link", "set", iface, "down", "netns", "1"], check=False).returncode == 0:
            moved.append(iface)
    return moved
