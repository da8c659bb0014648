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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from p4cf_kit.errors import KitError
from p4cf_kit.labels import LABEL
from p4cf_kit.podman.restore_gate import abort_gates, remove_stale_gates
from p4cf_kit.podman.runner import podman
from p4cf_kit.switch.targets import stop_switch
from p4cf_kit.topology import isolation
from p4cf_kit.topology.commands import run
from p4cf_kit.topology.names import LAB_LABEL_KEY, LabNames
from p4cf_kit.topology.networks import bridges_of
from p4cf_kit.paths import state_dir


def _podman_objects(kind: list[str], names: LabNames) -> list[tuple[str, str]]:
    """(id, name) of Podman objects of `kind` with both kit labels and the lab's name prefix."""
    out = podman(*kind, "--filter", f"label={LABEL}", "--filter", f"label={names.lab_label}",
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


def network_bridges(networks: list[str]) -> list[str]:
    """The Linux bridges behind these Podman networks, asked before they are removed; none
    when Podman cannot say (`down` goes on: it must work on a half-made lab)."""
    try:
        return bridges_of(networks)
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


def down(lab: str) -> dict[str, list[str]]:
    """Remove lab `lab` completely; returns what was removed, per kind."""
    names = LabNames(lab)
    removed: dict[str, list[str]] = {"switch": [], "containers": [], "pods": [], "networks": [],
                                     "interfaces": [], "netns": [], "nft": []}
    pid = stop_switch(names)
    if pid:
        removed["switch"].append(str(pid))
    gates = abort_gates(lab)   # first: a restore waiting at its gate holds its container's lock
    if gates:
        removed["gates"] = gates
    containers = _podman_objects(["ps", "-a"], names)
    pods = _podman_objects(["pod", "ps"], names)
    if containers:
        podman("rm", "-f", "-t", "0", *[c[0] for c in containers], check=False)
        removed["containers"] = [c[1] for c in containers]
    if pods:
        podman("pod", "rm", "-f", "-t", "0", *[p[0] for p in pods], check=False)
        removed["pods"] = [p[1] for p in pods]
    nets = _podman_objects(["network", "ls"], names)
    bridges = network_bridges([n[1] for n in nets])
    ifaces = lab_interfaces(names)
    with ThreadPoolExecutor(max_workers=8) as pool:
        if nets:
            pool.submit(podman, "network", "rm", "-f", *[n[1] for n in nets], check=False)
        for iface in ifaces:
            pool.submit(run, ["ip", "link", "del", iface], check=False)
    removed["networks"] = [n[1] for n in nets]
    removed["interfaces"] = ifaces + _remove_bridges(bridges)
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
    for leftover in ("lab.json", "s1.grpc.sock"):
        (state / leftover).unlink(missing_ok=True)
    return removed


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


def down_all() -> dict[str, dict[str, list[str]]]:
    """`down` every lab found on the machine."""
    return {lab: down(lab) for lab in known_labs()}


def remove_state(lab: str) -> None:
    """Forget a lab's state folder (logs included); only after `down`."""
    shutil.rmtree(state_dir() / "labs" / lab, ignore_errors=True)
