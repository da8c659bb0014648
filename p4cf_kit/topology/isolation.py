"""Make the switch the only path between the lab's host networks.

Layers, each enough on its own for the normal case:
  1. `--internal` networks: netavark puts no address on the bridges and installs no
     NAT/masquerade, and pods get no default route (networks.py).
  2. The switch's ports live in a kit netns with no addresses and no forwarding
     (wiring.py), so the kernel there cannot route or send RSTs.
  3. This module: a kit-owned nftables table in the root netns that drops every
     packet the kernel would *route* into or out of a kit bridge, and anything
     delivered locally from one. Rules compare in- and out-interface, so frames
     merely *bridged* within one network (which br_netfilter, enabled on our
     machines, also shows to the forward hook with iif = oif = the bridge) pass.
     When the switch runs in the root netns, its sw ends are dropped at
     prerouting too (AF_PACKET taps see frames before netfilter, the stack not).
The table is named `p4cf_isolation` (or `p4cf_<lab>_isolation`); cleanup deletes it.
"""

from __future__ import annotations

from p4cf_kit.machines.machine import LOCAL, Machine
from p4cf_kit.topology.names import LabNames


def ruleset(table: str, bridges: list[str], root_switch_ports: list[str]) -> str:
    """The nft script for the isolation table (replaces an older one atomically)."""
    fwd = []
    for b in bridges:
        fwd.append(f'        iifname "{b}" oifname != "{b}" drop')
        fwd.append(f'        oifname "{b}" iifname != "{b}" drop')
    ins = [f'        iifname "{b}" drop' for b in bridges]
    pre = [f'        iifname "{p}" drop' for p in root_switch_ports]
    body = [f"table inet {table} {{",
            "    chain forward {", "        type filter hook forward priority -10; policy accept;", *fwd, "    }",
            "    chain input {", "        type filter hook input priority -10; policy accept;", *ins, "    }"]
    if pre:
        body += ["    chain prerouting {", "        type filter hook prerouting priority -310; policy accept;",
                 *pre, "    }"]
    body.append("}")
    return (f"table inet {table}\ndelete table inet {table}\n" + "\n".join(body) + "\n")


def install(names: LabNames, bridges: list[str], root_switch_ports: list[str] | None = None,
            machine: Machine = LOCAL) -> None:
    """Install (or replace) this lab's isolation table on `machine` (each machine of a lab has
    its own, over the bridges of the host networks placed there)."""
    machine.run(["nft", "-f", "-"], input=ruleset(names.nft_table, bridges, root_switch_ports or []))


def remove(names: LabNames, machine: Machine = LOCAL) -> None:
    """Delete this lab's isolation table if present."""
    machine.run(["nft", "delete", "table", "inet", names.nft_table], check=False)


def kit_tables(machine: Machine = LOCAL) -> list[str]:
    """Names of all kit-owned (`p4cf` prefixed) inet tables."""
    out = machine.run(["nft", "list", "tables"], check=False).stdout
    return [line.split()[-1] for line in out.splitlines()
            if line.startswith("table inet p4cf")]
