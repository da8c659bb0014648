"""Bring back a lab's switch without touching the rest of the lab.

Why: a switch process that dies takes only its entries with it. The pods, the servers
(and their in-memory state), the client's TCP connections and the backends' current
places (after migrations) are all still there, so rebuilding the lab would throw away
exactly what an experiment is about. `restart_switch` starts only the switch, on the same
ports and address, pushes the pipeline and reinstalls every entry from the lab's record
(control/intent.py); the clients' connections resume by TCP retransmission. Counters
start anew (they lived in the dead process).

`p4cf switch restart` calls it; `p4cf up` calls it when the lab's switch died but its
pods are there (`switch_only_down`). A `Lab` whose session broke because the switch
restarted by other means reconnects and, finding the switch empty, reinstalls from the same
record by itself (`reinstall_if_blank`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from p4cf_kit.control.intent import Intent, IntentFile
from p4cf_kit.control.loadbalancer import LoadBalancer, NextHop
from p4cf_kit.errors import KitError
from p4cf_kit.labels import LABEL
from p4cf_kit.lablock import lab_lock
from p4cf_kit.machines.registry import cable_end
from p4cf_kit.netns import netns_path, run
from p4cf_kit.podman.runner import podman_json
from p4cf_kit.switch import targets as switch_targets
from p4cf_kit.topology.cleanup import netns_exists
from p4cf_kit.topology.names import ROLE_LABEL_KEY

if TYPE_CHECKING:
    from p4cf_kit.lab import Lab


@dataclass
class RestartReport:
    """What a switch restart did."""

    lab: str
    pid: int | None
    restart_s: float
    pool: list[str] = field(default_factory=list)
    entries: int = 0
    was_running: bool = False


def _lab_pods(lab: Lab) -> list[str]:
    return [p["Name"] for p in podman_json("pod", "ps", "--filter", f"label={LABEL}",
                                           "--filter", f"label={lab.names.lab_label}", "--format", "json")]


def switch_only_down(lab: Lab) -> bool:
    """True when the lab was up, its switch is gone, and its pods and record are still there."""
    state = lab.names.state
    if lab.config.switch.remote:  # not ours to start; `p4cf switch restart` reprograms it
        return False
    if switch_targets.running_pid(state) is not None:
        return False
    if not IntentFile(state).exists() or not (state / "lab.json").exists():
        return False
    return len(_lab_pods(lab)) > 0


def _ports(lab: Lab) -> dict[int, str]:
    """The switch ports the bring-up made (they outlive the switch process); KitError if gone."""
    names, in_ns = lab.names, lab.config.switch.netns
    if in_ns and not netns_exists(names.switch_netns):
        raise KitError(f"lab {lab.config.name!r}: the switch's network namespace {names.switch_netns} "
                       "is gone, so its ports are too; rebuild the lab: `p4cf down` then `p4cf up`")
    ports: dict[int, str] = {}
    for h in lab.config.hosts:
        # a host on another machine: its port is the NIC cabled to that machine's uplink
        iface = names.switch_port(h.port) if h.machine == "local" else cable_end(lab.config, h)
        cmd = ["ip", *(["-n", names.switch_netns] if in_ns else []), "link", "show", iface]
        if run(cmd, check=False).returncode != 0:
            raise KitError(f"lab {lab.config.name!r}: switch port {h.port} ({iface}) is gone; "
                           "rebuild the lab: `p4cf down` then `p4cf up`")
        ports[h.port] = iface
    return ports


def start_switch_process(lab: Lab, timeout: float = 30.0) -> int | None:
    """Start the lab's switch process on its existing ports and address, as bring-up does (no
    entries). Returns its pid (None: a remote switch, not ours). KitError when the ports are gone."""
    cfg = lab.config
    if cfg.switch.elsewhere:  # ours, on another machine: its ports there outlive it too
        from p4cf_kit.switch import elsewhere
        machine = lab.machines[cfg.switch.machine]
        cables = {h.name: cable_end(cfg, h) for h in cfg.hosts if h.machine != cfg.switch.machine}
        return elsewhere.start(cfg, lab.names, machine, elsewhere.ports_present(cfg, lab.names, machine, cables),
                               timeout).pid
    target = switch_targets.target_of(cfg.switch)
    ports = {} if cfg.switch.remote else _ports(lab)  # a remote switch: only checked, not started
    started = target.start(lab.names.state, ports, lab.grpc_addr, cfg.switch.device_id,
                           netns_path(lab.names.switch_netns) if cfg.switch.netns else None, timeout=timeout,
                           container_name=f"{lab.names.prefix}s1",
                           labels=(LABEL, lab.names.lab_label, f"{ROLE_LABEL_KEY}=switch"),
                           datapath=cfg.switch.datapath)
    return started.pid


def _recorded(lab: Lab) -> Intent:
    intent = IntentFile(lab.names.state, lab._host_of).load()
    if intent is None or not intent.backends or intent.client is None:
        raise KitError(f"lab {lab.config.name!r} has no record of its switch entries "
                       f"({lab.names.state / 'intent.json'}); rebuild it: `p4cf down` then `p4cf up`")
    return intent


def _install(lb: LoadBalancer, intent: Intent) -> int:
    """Write the recorded entries; check the pool read back; returns how many entries."""
    client = intent.client
    assert client is not None
    want = [NextHop(b.mac, b.ip, b.port) for b in intent.backends]
    lb.install(intent.vip, intent.client_subnet, NextHop(client.mac, client.ip, client.port), want,
               intent.port_macs)
    got = lb.state()
    if got.backends != want:
        raise KitError(f"after reinstalling, the switch holds {got.backends}, not the recorded pool {want}")
    return len(intent.port_macs) + 1 + len(intent.backends) + 2


def reinstall_if_blank(lab: Lab, lb: LoadBalancer) -> bool:
    """A switch that restarted under a running session holds no entries: put the recorded ones
    back (the stream broke, so `Lab` reconnected and calls this). True when it reinstalled."""
    intent = IntentFile(lab.names.state, lab._host_of).load()
    if intent is None or not intent.backends or intent.client is None:
        return False
    if lb.state().vip is not None:
        return False  # programmed (by `p4cf switch restart`, or never lost)
    with lab_lock(lab.names.state, lab.config.name, "reinstalling the entries of a restarted switch"):
        if lb.state().vip is not None:
            return False
        entries = _install(lb, intent)
    print(f"p4cf: lab {lab.config.name!r}: the switch restarted and was empty; reinstalled its "
          f"{entries} entries from the lab's record (pool {' '.join(intent.hosts())})",
          file=sys.stderr, flush=True)
    return True


def restart_switch(lab: Lab, timeout: float = 30.0) -> RestartReport:
    """Start the lab's switch afresh and reinstall the pipeline and every recorded entry.

    A running switch is stopped first. Containers are left alone. Holds the lab's lock.
    """
    with lab_lock(lab.names.state, lab.config.name, "restarting the switch"):
        t0 = time.monotonic()
        state = lab.names.state
        intent = _recorded(lab)
        cfg = lab.config
        recorded = intent.pipeline.get("target")
        if recorded and recorded != cfg.switch.target:
            raise KitError(f"lab {cfg.name!r} was programmed on target {recorded!r}, its config says "
                           f"{cfg.switch.target!r}; rebuild it: `p4cf down` then `p4cf up`")
        lab.close()
        was_running = switch_targets.stop_switch(state) is not None
        pid = start_switch_process(lab, timeout)
        entries = _install(lab._connect(push_pipeline=True), intent)
        return RestartReport(lab=cfg.name, pid=pid, restart_s=time.monotonic() - t0,
                             pool=intent.hosts(), entries=entries, was_running=was_running)
