"""Checks a lab's other machines before anything is created, so bad input makes nothing.

Each failure names the machine, what failed and the fix: unreachable, no Podman answering
on its socket, an image missing there, an uplink that does not exist, a cable end missing
on the switch's side.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from p4cf_kit.checkpoint.criu import MIN_VERSION as MIN_CRIU
from p4cf_kit.config import LabConfig
from p4cf_kit.errors import KitError, PrerequisiteError
from p4cf_kit.machines.machine import Machine
from p4cf_kit.machines.registry import cable_end
from p4cf_kit.netns import run
from p4cf_kit.topology.names import LabNames


def check_machine(cfg: LabConfig, machine: Machine) -> None:
    """Everything the lab needs on remote `machine`; PrerequisiteError naming the first gap."""
    hosts = [h for h in cfg.hosts if h.machine == machine.name]
    machine.run(["true"])  # reachable, key accepted, host key known
    version = machine.podman("version", "--format", "{{.Server.Version}}", check=False)
    if version.returncode != 0:
        raise PrerequisiteError(f"machine {machine.name!r}: Podman does not answer on its socket: "
                                f"{(version.stderr or version.stdout).strip()}; start its service "
                                "(`systemctl enable --now podman.socket`) and check the socket path in "
                                f"machines.{machine.name}.podman")
    criu = machine.run(["sh", "-c", "criu --version 2>/dev/null | head -1"], check=False).stdout
    criu_version = tuple(int(x) for x in re.findall(r"\d+", criu)[:2])
    if criu_version < MIN_CRIU:
        found = criu.strip() or "no criu"
        raise PrerequisiteError(f"machine {machine.name!r} has {found}; migrations need CRIU >= "
                                f"{'.'.join(map(str, MIN_CRIU))} there (scripts/setup-criu.sh builds it); "
                                f"`p4cf doctor --machine {machine.name}` checks the rest")
    from p4cf_kit.apps.containers import server_image
    image = server_image(cfg.workload, cfg.images.server)  # the workload's (redis, custom) or images.server
    if machine.podman("image", "exists", image, check=False).returncode != 0:
        only = "" if image == cfg.images.server else f" --image {image}"
        raise PrerequisiteError(f"machine {machine.name!r} has no image {image}; copy it there with "
                                f"`p4cf images push {machine.name}{only}`")
    for h in hosts:
        if not h.uplink:  # on the switch's own machine: its port is made there
            continue
        if machine.run(["ip", "link", "show", h.uplink], check=False).returncode != 0:
            raise PrerequisiteError(f"machine {machine.name!r} has no interface {h.uplink!r} (uplink of "
                                    f"{h.name}); fix machines.{machine.name}.uplinks (see `ip link` there)")


def check_cables(cfg: LabConfig) -> None:
    """The switch side of every remote host's cable exists here (or still sits in the lab's
    switch namespace after a crash)."""
    names = LabNames(cfg.name)
    for h in cfg.remote_hosts:
        iface = cable_end(cfg, h)
        if Path(f"/sys/class/net/{iface}").exists():
            continue
        in_ns = Path(f"/run/netns/{names.switch_netns}").exists() and run(
            ["ip", "-n", names.switch_netns, "link", "show", iface], check=False).returncode == 0
        if not in_ns:
            raise PrerequisiteError(f"switch port {h.port} for {h.name} (machine {h.machine!r}): interface "
                                    f"{iface!r} does not exist here; fix [switch.ports] {h.port}")


def check_switch_machine(cfg: LabConfig, machine: Machine) -> None:
    """The machine that runs the kit's switch: reachable, the switch program there, each NIC
    cabled to another machine's host present, and no switch of this lab left running there."""
    from p4cf_kit.switch import elsewhere
    machine.run(["true"])  # reachable, key accepted, host key known
    elsewhere.require_program(cfg.switch.target, machine, cfg.machines[machine.name])
    for h in cfg.hosts:
        if h.machine == machine.name:
            continue
        nic = cable_end(cfg, h)
        ns = elsewhere.netns_name(LabNames(cfg.name), machine.name)  # still there after a crash: down frees it
        if machine.run(["sh", "-c", f"ip link show {nic} || ip -n {ns} link show {nic}"],
                       check=False).returncode != 0:
            raise PrerequisiteError(f"machine {machine.name!r} (the switch's) has no interface {nic!r} for switch "
                                    f"port {h.port} ({h.name}'s cable); fix [switch.ports] {h.port} "
                                    f"(see `ip link` there)")


def check_local_uplinks(cfg: LabConfig) -> None:
    """On a remote switch this machine's hosts reach it through NICs of their own: they exist."""
    for h in cfg.hosts:
        if h.machine == "local" and h.uplink and not Path(f"/sys/class/net/{h.uplink}").exists():
            fix = f"[hosts.{h.name}] uplink" if cfg.switch.elsewhere else f"[switch.ports] {h.port}"
            raise PrerequisiteError(f"this machine has no interface {h.uplink!r} (cabled to switch port {h.port} "
                                    f"for {h.name}); fix {fix} (see `ip link`)")


def check_machines(cfg: LabConfig, machines: dict[str, Machine]) -> None:
    """Check every remote machine of the lab, in parallel; the first failure is raised."""
    if cfg.switch.remote or cfg.switch.elsewhere:
        check_local_uplinks(cfg)
    remote = [m for m in machines.values() if not m.is_local]
    if not remote:
        return
    if not cfg.switch.remote and not cfg.switch.elsewhere:  # a remote switch's side of the cables is its owner's
        check_cables(cfg)
    hosting = {h.machine for h in cfg.hosts}
    with ThreadPoolExecutor(max_workers=len(remote) + 1) as pool:
        futures = [pool.submit(check_machine, cfg, m) for m in remote if m.name in hosting]
        if cfg.switch.elsewhere:
            futures.append(pool.submit(check_switch_machine, cfg, machines[cfg.switch.machine]))
        errors = []
        for f in futures:
            try:
                f.result()
            except KitError as exc:
                errors.append(exc)
    if errors:
        raise errors[0]
