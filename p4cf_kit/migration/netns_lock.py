"""CRIU's network lock, as it is left in a pod's network namespace after a dump.

Why: `criu dump --tcp-established` blocks all traffic of the dumped netns (a
`CRIU` iptables chain jumped to from INPUT and OUTPUT that drops everything but
CRIU's own marked packets) so the kernel sends no RST for sockets that are about
to vanish. The process is gone afterwards, but the chain stays: the source pod
silently drops everything. That is what keeps client connections alive while the
backend is restored elsewhere, so the lock is only released after the switch
points at the new location. A later restore into the same pod would clear it
itself (CRIU locks and unlocks the netns it restores into), but a fresh server
started there (`Lab.pool`) would be unreachable, so migration cleanup releases it.
"""

from __future__ import annotations

from p4cf_kit.topology.commands import in_netns

CHAIN = "CRIU"
_TOOLS = ("iptables", "ip6tables")


def lock_present(netns_path: str) -> bool:
    """True when the netns still has CRIU's chain (IPv4 or IPv6)."""
    for tool in _TOOLS:
        proc = in_netns(netns_path, [tool, "-w", "-S", CHAIN], check=False)
        if proc.returncode == 0:
            return True
    return False


def release_lock(netns_path: str) -> bool:
    """Remove CRIU's chain and the jumps to it from the netns; True when one was there."""
    script = "".join(
        f"while {tool} -w -D INPUT -j {CHAIN} 2>/dev/null; do :; done\n"
        f"while {tool} -w -D OUTPUT -j {CHAIN} 2>/dev/null; do :; done\n"
        f"{tool} -w -F {CHAIN} 2>/dev/null && {tool} -w -X {CHAIN} 2>/dev/null && echo {tool}\n"
        for tool in _TOOLS)
    out = in_netns(netns_path, ["sh", "-c", script], check=False).stdout
    return bool(out.strip())
