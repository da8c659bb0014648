"""`down`: remove everything a lab made, found by label and name prefix, never by memory.

Why no state file is trusted: a bring-up killed midway leaves objects that no
record lists. So cleanup asks Podman for objects labelled `p4cf=1` *and*
`p4cf.lab=<lab>` whose name carries the lab's prefix, lists interfaces matching the
lab's interface pattern, and removes the lab's netns and nft table by name. Every
step tolerates "already gone", so `down` is idempotent. The switch process is
stopped through its target (embedded or bmv2) by the pid in its pid file, checked
against its command line first; a BMv2 run as a container is found by its labels too.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from p4cf_kit.config import LabConfig, parse_config
from p4cf_kit.errors import KitError
from p4cf_kit.labels import LABEL
from p4cf_kit.machines.machine import LOCAL, Machine
from p4cf_kit.netns import run
from p4cf_kit.paths import state_dir
from p4cf_kit.podman.restore_gate import abort_gates, remove_stale_gates
from p4cf_kit.podman.runner import podman
from p4cf_kit.switch.targets import stop_switch
from p4cf_kit.topology import isolation
from p4cf_kit.topology.names import LAB_LABEL_KEY, LabNames
from p4cf_kit.topology.networks import bridges_of
from p4cf_kit.topology.wiring import release_cables

LAB_STATE_FILE = "lab.json"


def _podman_objects(kind: list[str], names: LabNames, machine: Machine = LOCAL) -> list[tuple[str, str]]:
    """(id, name) of Podman objects of `kind` with both kit labels and the lab's name prefix."""
    out = machine.podman(*kind, "--filter", f"label={LABEL}", "--filter", f"label={names.lab_label}",
                 "--format", "json", check=False).stdout.strip()
    items = json.loads(out) if out else []
    found = []
    for item in items or []:
        name = item.get("Name") or item.get("name") or (item.get("Names") or [""])[0]
        oid = item.get("Id") or item.get("ID") or item.get("id") or name
        if name.startswith(names.prefix):
            found.append((str(oid), str(name)))
    return found


def lab_interfaces(names: LabNames) -> list[str]:
    """This lab's veth ends left in the root netns."""
    out = run(["ip", "-o", "link", "show"], check=False).stdout
    found = []
    for line in out.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            iface = parts[1].strip().split("@")[0]
            if names.iface_re.match(iface):
                found.append(iface)
    return found


def network_bridges(networks: list[str], machine: Machine = LOCAL) -> list[str]:
    """The Linux bridges behind these Podman networks, asked before they are removed; none
    when Podman cannot say (`down` goes on: it must work on a half-made lab)."""
    try:
        return bridges_of(networks, machine)
    except KitError:
        return []


def _remove_bridges(bridges: list[str]) -> list[str]:
    """Delete the lab networks' bridges that outlived `podman network rm`.

    Why: netavark deletes a bridge only when its last container leaves and nothing else is
    plugged in, but the switch's veth port is; and `network rm` never deletes a bridge. Left
    alone, every bring-up leaked one (a machine collected 1426, and tools that list
    interfaces, scapy among them, slowed to a crawl). Only bridges of networks this lab owned
    are touched, and only once no port is left on them."""
    gone = []
    for bridge in bridges:
        sysfs = Path("/sys/class/net") / bridge
        if not (sysfs / "bridge").is_dir():
            continue  # already gone (netavark removed it) or not a bridge
        brif = sysfs / "brif"
        if brif.is_dir() and any(brif.iterdir()):
            continue  # still in use by something else
        if run(["ip", "link", "del", bridge], check=False).returncode == 0:
            gone.append(bridge)
    return gone


def netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def saved_config(lab: str) -> LabConfig | None:
    """The config a lab was brought up with (its state folder), or None when unreadable."""
    path = state_dir() / "labs" / lab / LAB_STATE_FILE
    try:
        return parse_config(json.loads(path.read_text()))
    except (OSError, ValueError, KitError):
        return None


def _remote_machines(lab: str) -> tuple[dict[str, Machine], list[str], dict[str, list[str]]]:
    """The lab's other machines (from its saved config), what could not be opened, and the
    uplinks the lab used on each."""
    cfg = saved_config(lab)
    if cfg is None or not (cfg.remote_hosts or cfg.switch.elsewhere):
        return {}, [], {}
    from p4cf_kit.machines.registry import open_machine
    machines: dict[str, Machine] = {}
    unreachable: list[str] = []
    uplinks: dict[str, list[str]] = {}
    for h in cfg.remote_hosts:
        uplinks.setdefault(h.machine, []).append(h.uplink)
    for name in sorted({*uplinks, *([cfg.switch.machine] if cfg.switch.elsewhere else [])}):
        try:
            machines[name] = open_machine(cfg.machines[name])
        except KitError as exc:
            unreachable.append(f"{name}: {exc}")
    return machines, unreachable, uplinks


def _down_machine(names: LabNames, machine: Machine, removed: dict[str, list[str]],
                  uplinks: Sequence[str] = ()) -> None:
    """Remove the lab's containers, pods, networks, bridges and isolation table on `machine`."""
    where = "" if machine.is_local else f"{machine.name}:"
    if not machine.is_local:  # first: a restore waiting at its gate holds its container's lock
        from p4cf_kit.podman.remote_gate import abort_remote_gates
        gates = abort_remote_gates(machine, names.lab)
        if gates:
            removed.setdefault("gates", []).extend(where + g for g in gates)
    containers = _podman_objects(["ps", "-a"], names, machine)
    pods = _podman_objects(["pod", "ps"], names, machine)
    if containers:
        machine.podman("rm", "-f", "-t", "0", *[c[0] for c in containers], check=False)
        removed["containers"] += [where + c[1] for c in containers]
    if pods:
        machine.podman("pod", "rm", "-f", "-t", "0", *[p[0] for p in pods], check=False)
        removed["pods"] += [where + p[1] for p in pods]
    nets = _podman_objects(["network", "ls"], names, machine)
    bridges = network_bridges([n[1] for n in nets], machine)
    if machine.is_local:
        return _down_local_links(names, nets, bridges, removed, uplinks)
    if nets:
        machine.podman("network", "rm", "-f", *[n[1] for n in nets], check=False)
        removed["networks"] += [where + n[1] for n in nets]
    # The uplinks leave their bridges first: a bridge with a port left is never deleted.
    script = "".join(f"ip link set {u} nomaster 2>/dev/null || true\n" for u in uplinks if u)
    script += "".join(f"[ -d /sys/class/net/{b}/bridge ] && [ -z \"$(ls /sys/class/net/{b}/brif)\" ] "
                      f"&& ip link del {b} && echo {b}\n" for b in bridges)
    if script:
        out = machine.run(["sh", "-c", script + "true\n"], check=False).stdout
        removed["interfaces"] += [where + b for b in out.split()]
    if names.nft_table in isolation.kit_tables(machine):
        isolation.remove(names, machine)
        removed["nft"].append(where + names.nft_table)


def _clear_remote_switch(lab: str, names: LabNames) -> str:
    """A remote switch the lab programmed loses the lab's entries (it is someone else's box);
    unreachable, it keeps them and `down` says so. Returns what was done, or ""."""
    from p4cf_kit.switch.targets import remote_in_use
    cfg = saved_config(lab)
    if cfg is None or not cfg.switch.remote or not remote_in_use(names.state):
        return ""
    from p4cf_kit.control.connection import SwitchConnection
    from p4cf_kit.control.loadbalancer import LoadBalancer
    addr = cfg.switch.grpc_addr
    try:
        with SwitchConnection(addr, cfg.switch.device_id, tls=cfg.switch.tls) as conn:
            n = LoadBalancer(conn).clear()
    except KitError as exc:
        print(f"p4cf: lab {lab!r}: the lab's entries stay on the remote switch at {addr}: {exc}",
              file=sys.stderr, flush=True)
        return f"remote switch {addr}: entries NOT removed (unreachable)"
    return f"remote switch {addr}: {n} entries removed"


def down(lab: str, machines: dict[str, Machine] | None = None) -> dict[str, list[str]]:
    """Remove lab `lab` completely, on every machine it spans; returns what was removed, per kind.

    `machines`: the lab's other machines; by default read from the config the lab was brought
    up with. A machine that cannot be reached is reported under "unreachable" (run `down`
    again once it is back); everything else is still removed."""
    names = LabNames(lab)
    removed: dict[str, list[str]] = {"switch": [], "containers": [], "pods": [], "networks": [],
                                     "interfaces": [], "netns": [], "nft": []}
    cleared = _clear_remote_switch(lab, names)
    if cleared:
        removed["switch"].append(cleared)
    pid = stop_switch(names.state)
    if pid:
        removed["switch"].append(str(pid))
    gates = abort_gates(lab)   # first: a restore waiting at its gate holds its container's lock
    if gates:
        removed["gates"] = gates
    remote, unreachable, uplinks = _remote_machines(lab)
    if machines is not None:
        remote = {k: m for k, m in machines.items() if not m.is_local}
    cfg = saved_config(lab)
    switch_machine = cfg.switch.machine if cfg is not None and cfg.switch.elsewhere else None
    for name, machine in remote.items():
        try:
            if name == switch_machine:  # first: a bridge that keeps a switch port is never deleted
                from p4cf_kit.switch.elsewhere import unwire
                removed["interfaces"] += unwire(names, machine)
                if name not in uplinks:
                    continue  # it runs the switch only (it may have no Podman at all)
            _down_machine(names, machine, removed, uplinks.get(name, []))
        except KitError as exc:
            unreachable.append(f"{name}: {exc}")
    if unreachable:
        removed["unreachable"] = unreachable
    _down_machine(names, LOCAL, removed, _local_uplinks(lab))
    cables = release_cables(names)
    if cables:
        removed["cables"] = cables
    if netns_exists(names.switch_netns):
        run(["ip", "netns", "del", names.switch_netns], check=False)
        removed["netns"].append(names.switch_netns)
    if names.nft_table in isolation.kit_tables():
        isolation.remove(names)
        removed["nft"].append(names.nft_table)
    stale = remove_stale_gates()
    if stale:
        removed.setdefault("gates", []).extend(stale)
    state = state_dir() / "labs" / lab
    for leftover in (LAB_STATE_FILE, "s1.grpc.sock"):
        (state / leftover).unlink(missing_ok=True)
    return removed


def _down_local_links(names: LabNames, nets: list[tuple[str, str]], bridges: list[str],
                      removed: dict[str, list[str]], uplinks: Sequence[str] = ()) -> None:
    """This machine's networks, the lab's veths and the bridges netavark left; this machine's
    uplinks (its NICs cabled to a switch the kit does not run) leave their bridges first, as on
    other machines: a bridge with a port left is never deleted."""
    ifaces = lab_interfaces(names)
    with ThreadPoolExecutor(max_workers=8) as pool:
        if nets:
            pool.submit(podman, "network", "rm", "-f", *[n[1] for n in nets], check=False)
        for iface in ifaces:
            pool.submit(run, ["ip", "link", "del", iface], check=False)
        for uplink in uplinks:
            if Path(f"/sys/class/net/{uplink}/master").exists():
                pool.submit(run, ["ip", "link", "set", uplink, "nomaster"], check=False)
    removed["networks"] += [n[1] for n in nets]
    removed["interfaces"] += ifaces + _remove_bridges(bridges)


def _local_uplinks(lab: str) -> list[str]:
    """This machine's NICs the lab enslaved to its host networks' bridges (hosts here cabled to a
    switch the kit does not run), from its saved config."""
    cfg = saved_config(lab)
    if cfg is None:
        return []
    return [h.uplink for h in cfg.hosts if h.uplink and h not in cfg.remote_hosts]


def known_labs() -> list[str]:
    """Lab names that have something labelled on this machine or a state folder."""
    labs: set[str] = set()
    for kind in (["ps", "-a"], ["pod", "ps"], ["network", "ls"]):
        out = podman(*kind, "--filter", f"label={LABEL}", "--format", "json", check=False).stdout.strip()
        for item in (json.loads(out) if out else []) or []:
            lab = (item.get("Labels") or item.get("labels") or {}).get(LAB_LABEL_KEY)
            if lab:
                labs.add(lab)
    labs_dir = state_dir() / "labs"
    if labs_dir.is_dir():
        labs.update(p.name for p in labs_dir.iterdir() if p.is_dir())
    return sorted(labs)


def remove_unused_emulated_machines() -> dict[str, list[str]]:
    """Remove every emulated machine that no lab still up (one with a saved config) uses."""
    from p4cf_kit.machines import emulated
    used: set[str] = set()
    for lab in known_labs():
        cfg = saved_config(lab)
        if cfg is not None:
            used.update(m.name for m in cfg.machines.values() if m.emulated)
    return {name: emulated.remove(name) for name in emulated.emulated_names() if name not in used}


def down_all() -> dict[str, dict[str, list[str]]]:
    """`down` every lab found on the machine."""
    return {lab: down(lab) for lab in known_labs()}


def remove_state(lab: str) -> None:
    """Forget a lab's state folder (logs included); only after `down`."""
    shutil.rmtree(state_dir() / "labs" / lab, ignore_errors=True)
