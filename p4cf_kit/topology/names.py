"""Names of everything one lab creates, derived from its config in one place.

Why: creation and cleanup must agree on names, and cleanup must find a crashed
lab's leftovers without any state file. The default lab uses the plain names of
the design (`p4cf-h2`, `p4cf-h2-net`, `p4cf-h2-srv`, netns `p4cf-s1`); a lab named
X uses `p4cf-X-...`, so two labs (e.g. parallel tests) never collide. Interface
names stay within Linux's 15 characters: `p4cf-1sw` / `p4cf-X-1sw`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from p4cf_kit.config import DEFAULT_LAB, HostConfig, LabConfig
from p4cf_kit.labels import LABEL, LABEL_KEY
from p4cf_kit.paths import state_dir

LAB_LABEL_KEY = f"{LABEL_KEY}.lab"
ROLE_LABEL_KEY = f"{LABEL_KEY}.role"


@dataclass(frozen=True)
class LabNames:
    """Names and labels for the lab called `lab` (see the module docstring)."""

    lab: str

    @property
    def prefix(self) -> str:
        return "p4cf-" if self.lab == DEFAULT_LAB else f"p4cf-{self.lab}-"

    def network(self, host: str) -> str:
        return f"{self.prefix}{host}-net"

    def pod(self, host: str) -> str:
        return f"{self.prefix}{host}"

    def server(self, host: str) -> str:
        return f"{self.prefix}{host}-srv"

    def client(self, host: str) -> str:
        return f"{self.prefix}{host}-client"

    @property
    def switch_netns(self) -> str:
        return f"{self.prefix}s1"

    def switch_port(self, index: int) -> str:
        """The veth end the switch opens (in the switch netns)."""
        return f"{self.prefix}{index}sw"

    def bridge_port(self, index: int) -> str:
        """The veth end enslaved to host network `index`'s bridge (root netns)."""
        return f"{self.prefix}{index}br"

    @property
    def iface_re(self) -> re.Pattern[str]:
        """Matches exactly this lab's interface names (not another lab's)."""
        return re.compile(rf"^{re.escape(self.prefix)}\d+(sw|br)$")

    @property
    def nft_table(self) -> str:
        return "p4cf_isolation" if self.lab == DEFAULT_LAB else f"p4cf_{self.lab}_isolation"

    @property
    def lab_label(self) -> str:
        return f"{LAB_LABEL_KEY}={self.lab}"

    def labels(self, role: str) -> list[str]:
        """`--label` arguments for a Podman object of this lab with `role`."""
        return ["--label", LABEL, "--label", self.lab_label, "--label", f"{ROLE_LABEL_KEY}={role}"]

    @property
    def state(self) -> Path:
        """This lab's state folder (pid and log files, the resolved config)."""
        path = state_dir() / "labs" / self.lab
        path.mkdir(parents=True, exist_ok=True)
        return path

    def default_grpc_addr(self) -> str:
        return f"unix:{self.state / 's1.grpc.sock'}"


def names_for(cfg: LabConfig) -> LabNames:
    return LabNames(cfg.name)


def host_role(host: HostConfig) -> str:
    """The `p4cf.role` label value of a host's pod (client, backend or host for idle ones)."""
    return {"client": "client", "backend": "backend"}.get(host.role, "host")
