"""From a lab config to `Machine` objects: which machine runs each host, and how it is reached.

An emulated machine's entry (`emulated = true`) is resolved here from the record that
`p4cf machine emulate` wrote (its URL, key, known_hosts and cables); from then on the kit
reaches it exactly as it reaches a real one.
"""

from __future__ import annotations

from pathlib import Path

from p4cf_kit.config import LOCAL_MACHINE, HostConfig, LabConfig, MachineConfig
from p4cf_kit.errors import ConfigError
from p4cf_kit.machines import emulated
from p4cf_kit.machines.machine import LOCAL, Machine
from p4cf_kit.machines.remote import RemoteMachine
from p4cf_kit.machines.ssh import parse_podman_url

DEFAULT_KNOWN_HOSTS = Path("/root/.ssh/known_hosts")


def _emulation(mc: MachineConfig) -> emulated.EmulatedMachine:
    rec = emulated.load(mc.name)
    if rec is None:
        raise ConfigError(f"machine {mc.name!r} is marked emulated but no emulated machine of that name "
                          f"exists; create it with `p4cf machine emulate {mc.name}`")
    return rec


def open_machine(mc: MachineConfig) -> RemoteMachine:
    """A `RemoteMachine` for config entry `mc` (nothing is contacted yet)."""
    if mc.emulated:
        rec = _emulation(mc)
        url, identity, known = rec.podman_url, rec.identity, rec.known_hosts
    else:
        url, identity, known = mc.podman, mc.identity, mc.known_hosts
    return RemoteMachine(mc.name, parse_podman_url(url, f"machines.{mc.name}.podman"), Path(identity),
                         Path(known) if known else DEFAULT_KNOWN_HOSTS, transfer=mc.transfer)


def machines_of(cfg: LabConfig) -> dict[str, Machine]:
    """Every machine the lab uses, by name; "local" always included."""
    out: dict[str, Machine] = {LOCAL_MACHINE: LOCAL}
    used = {h.machine for h in cfg.remote_hosts}
    if cfg.switch.elsewhere:
        used.add(cfg.switch.machine)
    for name in sorted(used):
        out[name] = open_machine(cfg.machines[name])
    return out


def cable_end(cfg: LabConfig, host: HostConfig) -> str:
    """The switch machine's NIC cabled to `host`'s uplink (its switch port), for a host on
    another machine than the switch's."""
    if host.port in cfg.switch.ports:
        return cfg.switch.ports[host.port]
    if cfg.switch.elsewhere:  # a host here, cabled to an emulated switch machine's uplink
        rec = _emulation(cfg.machines[cfg.switch.machine])
        inside = {here: inside for inside, here in rec.uplinks.items()}
        if host.uplink not in inside:
            raise ConfigError(f"emulated machine {cfg.switch.machine!r} has {len(rec.uplinks)} cable(s) to this "
                              f"machine, too few for {host.name}; recreate it with more: "
                              f"`p4cf machine emulate {cfg.switch.machine} --uplinks N`")
        return inside[host.uplink]
    mc = cfg.machines[host.machine]
    if mc.emulated:
        rec = _emulation(mc)
        if host.uplink not in rec.uplinks:
            raise ConfigError(f"emulated machine {mc.name!r} has no uplink {host.uplink!r} (it has "
                              f"{', '.join(rec.uplinks)}); recreate it with more: "
                              f"`p4cf machine emulate {mc.name} --uplinks N`")
        return rec.uplinks[host.uplink]
    raise ConfigError(f"{host.name} is on machine {mc.name!r}: add [switch.ports] {host.port} = \"NIC\"")


def named_machine(name: str, cfg: LabConfig | None = None) -> tuple[RemoteMachine, MachineConfig]:
    """Machine `name` from a lab config, else the emulated machine of that name."""
    if cfg is not None and name in cfg.machines:
        mc = cfg.machines[name]
    elif emulated.load(name) is not None:
        mc = MachineConfig(name=name, emulated=True)
    else:
        where = "the lab config" if cfg is not None else "any lab config (pass one with -c)"
        raise ConfigError(f"unknown machine {name!r}: it is not in {where} and no emulated machine has "
                          f"that name; add [machines.{name}] to the config or `p4cf machine emulate {name}`")
    return open_machine(mc), mc
