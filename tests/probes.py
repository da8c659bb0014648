"""A TCP connect from inside a pod's network namespace, on whichever machine the pod lives.

Why a helper of its own: the lab tests and the multi-machine tests ask the same question
(is this address reachable from that host, or does the switch drop it) on either machine.
"""

from __future__ import annotations

import sys

from p4cf_kit.machines.machine import Machine

PROBE = """
import socket, sys
s = socket.socket(); s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print("connected")
except Exception as e:
    print(type(e).__name__)
"""


def tcp_probe(machine: Machine, netns_path: str, ip: str, port: int, timeout: float = 1.0) -> str:
    """`connected`, `TimeoutError`, ...: a connect to ip:port from that netns (python3 there)."""
    python = sys.executable if machine.is_local else "python3"
    out = machine.in_netns(netns_path, [python, "-c", PROBE, ip, str(port), str(timeout)], check=False)
    return out.stdout.strip() or out.stderr.strip()
