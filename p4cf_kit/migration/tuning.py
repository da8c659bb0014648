"""Shortening TCP recovery after a migration: `rto_min` on the routes between client and servers.

Why: while the backend is frozen, the client's requests are dropped by CRIU's
network lock and its retransmission timer backs off (200 ms, 400 ms, 800 ms ...
with Linux's default minimum RTO of 200 ms). The connection only resumes at the
first retransmission after the switch points at the restored backend, so the
gap the client sees is the frozen time rounded up to the next backoff step. A
small `rto_min` on the route (an iproute2 route attribute, per network namespace,
set from outside with nsenter) makes those steps fine-grained on both sides: the
client retransmits its requests sooner, the restored server its replies. Only
the kit's own pods are touched; their routes via the switch gateway are changed
in place (`ip route change ... rto_min`), everything else about them is kept.
"""

from __future__ import annotations

import re

from p4cf_kit.machines.machine import LOCAL, Machine

DEFAULT_RTO_MIN_MS = 5
_RTO_RE = re.compile(r"\s+rto_min(\s+lock)?\s+\S+")


def gateway_routes(netns_path: str, machine: Machine = LOCAL) -> list[str]:
    """The IPv4 routes through a gateway in that netns, as `ip route show` prints them."""
    out = machine.in_netns(netns_path, ["ip", "-4", "route", "show"]).stdout
    return [line.strip() for line in out.splitlines() if " via " in line]


def set_rto_min(netns_path: str, rto_min_ms: int = DEFAULT_RTO_MIN_MS, machine: Machine = LOCAL) -> int:
    """Give every gateway route of the netns (on `machine`) `rto_min`; returns how many changed."""
    routes = gateway_routes(netns_path, machine)
    script = "set -e\n" + "".join(
        f"ip route change {_RTO_RE.sub('', r)} rto_min {int(rto_min_ms)}ms\n" for r in routes)
    if routes:
        machine.in_netns(netns_path, ["sh", "-c", script])
    return len(routes)


def route_rto_min_ms(netns_path: str, destination: str) -> int | None:
    """The rto_min (ms) of the route to `destination` in the netns, None when unset."""
    out = LOCAL.in_netns(netns_path, ["ip", "-4", "route", "get", destination]).stdout
    match = re.search(r"rto_min(?:\s+lock)?\s+(\d+)(ms|s)?", out)
    if match is None:
        return None
    return int(match.group(1)) * (1000 if match.group(2) == "s" else 1)
