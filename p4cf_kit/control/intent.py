"""What a lab's switch should hold, kept in the lab's state folder (`intent.json`).

Why: the entries live in the switch; when its process dies they die with it. Everything
else of the lab (pods, servers, their TCP connections, a backend that migrated) survives,
so a new switch process must get back exactly the entries the old one had: the pipeline,
the VIP's pool in slot order with each backend's *current* next hop, the return path and
the port MACs. The load balancer updates this record after every write it makes
(`LoadBalancer(intent=...)`); `p4cf switch restart` (and `p4cf up` on a lab whose switch
died) reinstalls from it.

The file is replaced atomically (write + rename), so a crash leaves the old or the new
record, never half of one.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

INTENT_FILE = "intent.json"


@dataclass(frozen=True)
class Hop:
    """A next hop as recorded (same fields as loadbalancer.NextHop, plus the host name)."""

    mac: str
    ip: str
    port: int
    host: str = ""


@dataclass
class Intent:
    """The switch's entries as the lab wants them."""

    vip: str = ""
    client_subnet: str = ""
    client: Hop | None = None
    base: int = 1
    backends: list[Hop] = field(default_factory=list)  # slot base+i -> backends[i]
    port_macs: dict[int, str] = field(default_factory=dict)
    pipeline: dict[str, Any] = field(default_factory=dict)  # target, p4info, device_config
    updated: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Intent:
        return cls(vip=d.get("vip", ""), client_subnet=d.get("client_subnet", ""),
                   client=Hop(**d["client"]) if d.get("client") else None, base=int(d.get("base", 1)),
                   backends=[Hop(**b) for b in d.get("backends", [])],
                   port_macs={int(k): v for k, v in d.get("port_macs", {}).items()},
                   pipeline=dict(d.get("pipeline", {})), updated=float(d.get("updated", 0.0)))

    def hosts(self) -> list[str]:
        """The backends' hosts in slot order (their IPs where no host name is known)."""
        return [b.host or b.ip for b in self.backends]


class IntentFile:
    """The record in one lab's state folder; `host_of(ip)` names hosts in it."""

    def __init__(self, state: Path, host_of: Callable[[str], str] | None = None) -> None:
        self.path = state / INTENT_FILE
        self.host_of = host_of or (lambda ip: "")

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> Intent | None:
        try:
            return Intent.from_dict(json.loads(self.path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, intent: Intent) -> None:
        intent.updated = time.time()
        data = asdict(intent)
        data["port_macs"] = {str(k): v for k, v in intent.port_macs.items()}
        tmp = self.path.with_name(f"{INTENT_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)

    def hop(self, mac: str, ip: str, port: int) -> Hop:
        return Hop(mac, ip, int(port), self.host_of(ip))

    # --- what the load balancer reports ---------------------------------------------------------

    def installed(self, vip: str, client_subnet: str, client: Hop, backends: list[Hop],
                  port_macs: dict[int, str], base: int) -> None:
        old = self.load() or Intent()
        self.save(Intent(vip=vip, client_subnet=client_subnet, client=client, base=base,
                         backends=list(backends), port_macs=dict(port_macs), pipeline=old.pipeline))

    def pool_set(self, backends: list[Hop], base: int) -> None:
        intent = self.load()
        if intent is None:
            return  # nothing installed through us: the full record comes with install()
        intent.backends, intent.base = list(backends), base
        self.save(intent)

    def slot_set(self, index: int, hop: Hop) -> None:
        intent = self.load()
        if intent is None or not 0 <= index - intent.base < len(intent.backends):
            return
        intent.backends[index - intent.base] = hop
        self.save(intent)

    def pipeline_set(self, target: str, p4info: str | None, device_config: str | None) -> None:
        intent = self.load() or Intent()
        intent.pipeline = {"target": target, "p4info": p4info, "device_config": device_config}
        self.save(intent)
