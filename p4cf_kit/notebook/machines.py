"""Notebook 05's lab: h4 on an emulated second machine, reached only over SSH.

Why a helper: the notebook shows a migration across machines and holds nothing but calls; the
emulated machine, the image copy and the two-machine config are made here, and the session's
teardown (also at kernel exit, through `p4cf down`) removes the machine with the lab.
"""

from __future__ import annotations

import os
import shutil
import weakref
from pathlib import Path

from p4cf_kit.config import LabConfig, parse_config
from p4cf_kit.notebook.session import LabSession, open_lab
from p4cf_kit.topology.traffic import TrafficRun

MACHINE = "nb"
LAB = "mm"


def machines_unavailable_reason() -> str | None:
    """None when an emulated machine can be made here (root, sshd, ssh, tc)."""
    if os.geteuid() != 0:
        return "emulating a machine needs root"
    if not Path("/usr/sbin/sshd").exists() or shutil.which("ssh") is None:
        return "emulating a machine needs openssh-server and openssh-client (apt-get install openssh-server)"
    return None


def two_machine_config(machine: str = MACHINE, link_gbit: float | None = 10.0) -> LabConfig:
    """Emulate `machine` (link rate-limited to `link_gbit`), copy the images there, and return
    the classic lab with h4 placed on it."""
    from p4cf_kit.config import MachineConfig
    from p4cf_kit.machines import emulated
    from p4cf_kit.machines.images import push_images
    from p4cf_kit.machines.registry import open_machine
    rec = emulated.emulate(machine, link_gbit=link_gbit)
    remote = open_machine(MachineConfig(machine, emulated=True))
    try:
        for outcome in push_images(remote):
            what = f"copied {outcome.bytes / 1e6:.1f} MB" if outcome.copied else "already there"
            print(f"{outcome.ref} -> machine {machine}: {what}")
    finally:
        remote.close()
    rate = f"{rec.link_gbit:g} Gbit/s" if rec.link_gbit else "unshaped"
    print(f"machine {machine}: ssh root@{rec.machine_addr}, link {rate}, uplinks {', '.join(rec.uplinks)}")
    return parse_config({"lab": {"name": LAB, "hosts": 4, "vip": "10.0.0.100", "subnet_pattern": "10.30.{n}.0/24"},
                         "machines": {machine: {"emulated": True}},
                         "hosts": {"h4": {"machine": machine}}})


def open_two_machine_lab(machine: str = MACHINE, link_gbit: float | None = 10.0) -> LabSession:
    """Bring up the two-machine lab; closing the session removes the lab, then the machine."""
    from p4cf_kit.machines import emulated
    session = open_lab(two_machine_config(machine, link_gbit))
    if session.started:
        weakref.finalize(session, emulated.remove, machine)
    return session


def busiest_backend(run: TrafficRun) -> str:
    """The backend holding the most client connections so far (the one worth moving: the
    hash may put few or none of a handful of connections on a given backend)."""
    replies = run.replies()
    per_host = replies.groupby("host")["conn_id"].nunique()
    return str(per_host.idxmax())
