"""CRIU's network lock, as it is left in a pod's network namespace after a dump.

Why: `criu dump --tcp-established` blocks all traffic of the dumped netns so the kernel
sends no RST for sockets that are about to vanish. With the kit's CRIU options
(checkpoint/runc_conf.py) that is an nftables table `inet CRIU-<run id>`; with CRIU's
default it is a `CRIU` iptables chain jumped to from INPUT and OUTPUT. The process is
gone afterwards, but the lock stays: the source pod silently drops everything. That is
what keeps client connections alive while the backend is restored elsewhere, so the lock
is only released after the switch points at the new location. A fresh server started
there later (`Lab.pool`) would be unreachable, so migration cleanup releases it.
"""

from __future__ import annotations

from p4cf_kit.machines.machine import LOCAL, Machine

CHAIN = "CRIU"
TABLE_PREFIX = "CRIU-"
_TOOLS = ("iptables", "ip6tables")


def _nft_tables(netns_path: str, machine: Machine = LOCAL) -> list[str]:
    """CRIU's nftables lock tables in the netns, as "family name"."""
    proc = machine.in_netns(netns_path, ["nft", "list", "tables"], check=False)
    tables = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table" and parts[2].startswith(TABLE_PREFIX):
            tables.append(f"{parts[1]} {parts[2]}")
    return tables


def lock_present(netns_path: str, machine: Machine = LOCAL) -> bool:
    """True when the netns still has a CRIU lock (nftables table, or iptables chain v4/v6)."""
    if _nft_tables(netns_path, machine):
        return True
    for tool in _TOOLS:
        proc = machine.in_netns(netns_path, [tool, "-w", "-S", CHAIN], check=False)
        if proc.returncode == 0:
            return True
    return False


def release_lock(netns_path: str, machine: Machine = LOCAL) -> bool:
    """Remove CRIU's lock from the netns, whichever kind; True when one was there."""
    released = False
    for table in _nft_tables(netns_path, machine):
        deleted = machine.in_netns(netns_path, ["nft", "delete", "table", *table.split()], check=False)
        released |= deleted.returncode == 0
    script = "".join(
        f"if {tool} -w -S {CHAIN} >/dev/null 2>&1; then\n"
        f"  while {tool} -w -D INPUT -j {CHAIN} 2>/dev/null; do :; done\n"
        f"  while {tool} -w -D OUTPUT -j {CHAIN} 2>/dev/null; do :; done\n"
        f"  {tool} -w -F {CHAIN} 2>/dev/null && {tool} -w -X {CHAIN} 2>/dev/null && echo {tool}\n"
        f"fi\n"
        for tool in _TOOLS)
    out = machine.in_netns(netns_path, ["sh", "-c", script], check=False).stdout
    return released or bool(out.strip())
