"""`Lab`: the facade notebooks and the CLI use to bring a lab up, drive it, and tear it down.

    with Lab(default_config()) as lab:      # up() on enter, down() on exit
        run = lab.traffic(connections=32, duration=10)
        run.wait(); df = run.read()
        lab.pool(["h2", "h3", "h4"])
        lab.counters()

Bring-up runs independent steps concurrently: per host, network -> pod -> server ->
port attach -> host routes form one chain (hosts in parallel), while the switch
netns, its veth ports and the switch process start beside them. Any failure rolls
everything back with `cleanup.down` (which finds objects by label and prefix, so it
also removes what a crashed bring-up left). The resolved config is saved in the
lab's state folder, so another process (`p4cf status`, `p4cf pool`) can attach to a
running lab with `Lab.attach(name)`; the pool itself is always read from the switch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from p4cf_kit.apps import bulk
from p4cf_kit.apps import containers as app
from p4cf_kit.config import (
    DEFAULT_LAB,
    DEFAULT_TRANSFER,
    HostConfig,
    LabConfig,
    check_memory_kind,
    config_to_dict,
    default_config,
    parse_config,
)
from p4cf_kit.control.connection import SwitchConnection
from p4cf_kit.control.counters import read_counters
from p4cf_kit.control.intent import IntentFile
from p4cf_kit.control.loadbalancer import LoadBalancer, NextHop, PoolState
from p4cf_kit.errors import ConfigError, KitError, PrerequisiteError
from p4cf_kit.labels import LABEL
from p4cf_kit.lablock import holds_lab_lock
from p4cf_kit.machines.machine import LOCAL, Machine
from p4cf_kit.machines.preflight import check_machines
from p4cf_kit.machines.registry import cable_end, machines_of
from p4cf_kit.netns import netns_path
from p4cf_kit.paths import P4INFO_TXT
from p4cf_kit.switch import elsewhere
from p4cf_kit.switch import targets as switch_targets
from p4cf_kit.topology import cleanup, isolation, networks, pods, wiring
from p4cf_kit.topology import hosts as host_ctrs
from p4cf_kit.topology.memory import check_ballast_held, check_memory_fits
from p4cf_kit.topology.names import ROLE_LABEL_KEY, LabNames
from p4cf_kit.topology.pods import PodNet
from p4cf_kit.topology.traffic import TrafficRun

if TYPE_CHECKING:
    from p4cf_kit.migration import MigrationRecord
    from p4cf_kit.migration.experiment import ExperimentResult

STATE_FILE = "lab.json"


@dataclass
class UpReport:
    """Timings of one bring-up, in seconds per phase."""

    total_s: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)


class Lab:
    """One lab: its config, names, switch session and load balancer."""

    def __init__(self, config: LabConfig | None = None) -> None:
        self.config = config or default_config()
        self.names = LabNames(self.config.name)
        self.pod_nets: dict[str, PodNet] = {}
        self.bridges: dict[str, str] = {}
        self.conn: SwitchConnection | None = None
        self.lb: LoadBalancer | None = None
        self.last_up: UpReport | None = None
        self.machines: dict[str, Machine] = machines_of(self.config)

    def machine_of(self, host: str | HostConfig) -> Machine:
        """The machine that runs `host`'s network, pod and containers."""
        h = self.config.host(host) if isinstance(host, str) else host
        return self.machines[h.machine]

    # --- attach to a running lab -------------------------------------------------------------

    @classmethod
    def attach(cls, name: str = DEFAULT_LAB) -> Lab:
        """A Lab for an already running lab `name` (config from its state folder)."""
        path = LabNames(name).state / STATE_FILE
        if not path.exists():
            raise KitError(f"lab {name!r} is not up (no {path}); run `p4cf up` first")
        return cls(parse_config(json.loads(path.read_text())))

    # --- addresses ---------------------------------------------------------------------------

    @property
    def grpc_addr(self) -> str:
        sw = self.config.switch
        if sw.grpc_addr:
            return sw.grpc_addr
        return self.names.default_grpc_addr() if sw.netns else "127.0.0.1:9559"

    def next_hop(self, host: str | HostConfig) -> NextHop:
        """Where the switch reaches `host` (its MAC, IP and switch port)."""
        h = self.config.host(host) if isinstance(host, str) else host
        return NextHop(h.mac, str(h.ip), h.port)

    # --- up / down ---------------------------------------------------------------------------

    @holds_lab_lock("bringing the lab up")
    def up(self, timeout: float = 30.0) -> UpReport:
        """Create networks, pods, servers, switch and entries; roll back on any failure."""
        # a switch on another machine needs its program there (checked with the machines) and
        # only the compiler here
        why_not = None if self.config.switch.elsewhere else switch_targets.target_of(self.config.switch).unavailable()
        if why_not:
            raise PrerequisiteError(f"switch.target = {self.config.switch.target!r}: {why_not}")
        if switch_targets.switch_up(self.names.state):
            raise KitError(f"lab {self.config.name!r} is already up; `p4cf down` first")
        self._require_images([self.server_image] if self.config.backends else [])
        check_machines(self.config, self.machines)  # refused before anything is made
        check_memory_kind(self.config.backend.memory_mib, self.config.workload.kind)   # --workload too
        check_memory_fits(self.config.backend.memory_mib, len(self.config.backends))
        cleanup.down(self.config.name, self.machines)  # leftovers of a crashed run, if any
        report = UpReport()
        t0 = time.monotonic()
        (self.names.state / STATE_FILE).write_text(json.dumps(self.config.source or
                                                              config_to_dict_source(self.config)))
        try:
            self._ports_ready: Future[None] = Future()
            with ThreadPoolExecutor(max_workers=2 * len(self.config.hosts) + 2) as pool:
                chains = {h.name: pool.submit(self._host_chain, h) for h in self.config.hosts}
                sw_future = pool.submit(self._switch_chain, timeout)
                sw_future.result()
                report.phases["switch_programmed"] = time.monotonic() - t0
                for fut in chains.values():
                    fut.result()
                report.phases["hosts_ready"] = time.monotonic() - t0
            for name, machine in self.machines.items():
                hosts = [h for h in self.config.hosts if h.machine == name]
                if hosts or machine.is_local:
                    isolation.install(self.names, sorted(self.bridges[h.name] for h in hosts),
                                      [] if self.config.switch.netns or self.config.switch.remote
                                      or not machine.is_local else
                                      [self.names.switch_port(h.port) for h in self.config.hosts],
                                      machine=machine)
            report.phases["isolated"] = time.monotonic() - t0
            cfg = self.config
            for b in cfg.backends:
                host_ctrs.wait_ready(cfg, self.names, b, self.pod_nets[b.name].netns_path, timeout=timeout,
                                     machine=self.machine_of(b))
            report.phases["servers_listening"] = time.monotonic() - t0
            if cfg.backend.memory_mib:
                with ThreadPoolExecutor(max_workers=len(cfg.backends)) as pool:
                    for fut in [pool.submit(self._hold_memory, b) for b in cfg.backends]:
                        fut.result()
                report.phases["memory_held"] = time.monotonic() - t0
        except BaseException:
            self.down()
            raise
        report.total_s = time.monotonic() - t0
        self.last_up = report
        return report

    def _host_chain(self, host: HostConfig) -> None:
        machine = self.machine_of(host)
        bridge = networks.create_network(self.names, host, machine)
        self.bridges[host.name] = bridge
        if host.role == "backend":  # running the server starts the pod too
            pods.create_pod(self.names, host, start=False, machine=machine)
            host_ctrs.start_server(self.config, self.names, host, machine)
            net = pods.pod_net(self.names, host, machine)
        else:
            created = pods.create_pod(self.names, host, machine=machine)
            assert created is not None
            net = created
        self.pod_nets[host.name] = net
        wiring.configure_host(self.config, host, net.netns_path, machine)
        wiring.quiet_bridge_members(bridge, machine)
        if host.uplink:  # another machine's host, or any host of a remote switch
            wiring.attach_uplink(host, bridge, machine)  # its cable is the switch port
            return
        self._ports_ready.result()
        if self.config.switch.elsewhere:  # a host on the switch's machine
            elsewhere.attach_port(self.names, host, bridge, machine)
            return
        wiring.attach_port(self.names, host, bridge)

    def _switch_chain(self, timeout: float) -> None:
        if self.config.switch.remote:  # not ours to wire or start: check it, then program it
            self._ports_ready.set_result(None)
            switch_targets.target_of(self.config.switch).start(self.names.state, {}, self.grpc_addr,
                                                               self.config.switch.device_id, timeout=timeout)
            self._install()
            return
        if self.config.switch.elsewhere:
            self._switch_elsewhere(timeout)
            return
        try:
            in_ns = self.config.switch.netns
            if in_ns:
                wiring.create_switch_netns(self.names)
            ports = {h.port: wiring.create_port(self.names, h, in_ns) if h.machine == "local"
                     else wiring.take_cable(self.names, h, cable_end(self.config, h))
                     for h in self.config.hosts}
        except BaseException as exc:
            self._ports_ready.set_exception(exc)
            raise
        self._ports_ready.set_result(None)
        switch_targets.get_target(self.config.switch.target).start(
            self.names.state, ports, self.grpc_addr, self.config.switch.device_id,
            netns_path(self.names.switch_netns) if in_ns else None, timeout=timeout,
            container_name=f"{self.names.prefix}s1",
            labels=(LABEL, self.names.lab_label, f"{ROLE_LABEL_KEY}=switch"),
            datapath=self.config.switch.datapath)
        self._install()

    def _switch_elsewhere(self, timeout: float) -> None:
        """The kit's switch on another machine (switch/elsewhere.py): ports there, then the process."""
        cfg = self.config
        machine = self.machines[cfg.switch.machine]
        try:
            cables = {h.name: cable_end(cfg, h) for h in cfg.hosts if h.machine != cfg.switch.machine}
            ports = elsewhere.wire(cfg, self.names, machine, cables)
        except BaseException as exc:
            self._ports_ready.set_exception(exc)
            raise
        self._ports_ready.set_result(None)
        elsewhere.start(cfg, self.names, machine, ports, timeout=timeout)
        self._install()

    def _install(self) -> None:
        """Push the pipeline and write every entry. They depend on the config only, so the
        switch is programmed while pods start."""
        lb = self._connect(push_pipeline=True)
        cfg = self.config
        lb.install(str(cfg.vip), str(cfg.client.subnet), self.next_hop(cfg.client),
                   [self.next_hop(b) for b in cfg.backends], {h.port: h.switch_mac for h in cfg.hosts})

    def _connect(self, push_pipeline: bool = False) -> LoadBalancer:
        restarted = self.conn is not None and not self.conn.alive()
        if restarted:
            self.close()  # the switch restarted or went away: open a fresh session, state is read back
        elif self.conn is not None and self.conn.connected and not self.conn.still_primary():
            self.close()  # another controller took the primary role and this session is a backup:
            #              a fresh session with a newer election id takes it back (lab changes hold the lab lock)
        if self.conn is None or not self.conn.connected:
            if self.config.switch.elsewhere:  # its P4Runtime socket is reached through an SSH forward
                elsewhere.ensure_forward(self.names.state, self.machines[self.config.switch.machine])
            files = switch_targets.target_of(self.config.switch).pipeline() if push_pipeline \
                else switch_targets.PipelineFiles(P4INFO_TXT)
            self.conn = SwitchConnection(self.grpc_addr, self.config.switch.device_id,
                                         election_id=(0, time.time_ns() // 1_000_000),
                                         p4info=files.p4info, device_config=files.device_config,
                                         tls=self.config.switch.tls)
            self.conn.connect(push_pipeline=push_pipeline)
            if push_pipeline:  # recorded for a switch restart (control/intent.py)
                IntentFile(self.names.state).pipeline_set(self.config.switch.target, str(files.p4info),
                                                          str(files.device_config or "") or None)
            self.lb = LoadBalancer(self.conn, str(self.config.vip), IntentFile(self.names.state, self._host_of))
            if restarted and not push_pipeline:  # an empty restarted switch gets the recorded entries
                from p4cf_kit.recovery import reinstall_if_blank
                reinstall_if_blank(self, self.lb)
        assert self.lb is not None
        return self.lb

    @holds_lab_lock("taking the lab down")
    def down(self) -> dict[str, list[str]]:
        """Remove everything this lab made (idempotent; also after a crash)."""
        self.close()
        removed = cleanup.down(self.config.name, self.machines)
        self.pod_nets.clear()
        self.bridges.clear()
        for machine in self.machines.values():
            machine.close()   # the SSH connections to other machines
        return removed

    def close(self) -> None:
        """End this process's P4Runtime session; the lab keeps running."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
            self.lb = None

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # --- status -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What runs: switch pid and address, per-host pod/container state, the pool from the switch."""
        sw = switch_targets.running(self.names.state)
        out: dict[str, Any] = {"lab": self.config.name,
                               "switch": {"pid": sw.pid if sw else None, "grpc_addr": self.grpc_addr,
                                          "target": sw.target if sw else self.config.switch.target,
                                          "running": sw is not None, "data_plane": sw.data_path if sw else None},
                               "hosts": {}, "pool": None}
        containers: list[dict[str, Any]] = []
        for machine in {self.machine_of(h).name: self.machine_of(h) for h in self.config.hosts}.values():
            ps = machine.podman("ps", "-a", "--pod", "--filter", f"label={self.names.lab_label}",
                                "--format", "json", check=False).stdout.strip()
            containers += json.loads(ps) if ps else []
        for h in self.config.hosts:
            ctrs = {c["Names"][0]: c.get("State", "") for c in containers
                    if c.get("PodName") == self.names.pod(h.name) and not c.get("IsInfra")}
            out["hosts"][h.name] = {"role": h.role, "ip": str(h.ip), "mac": h.mac, "port": h.port,
                                    "machine": h.machine, "containers": ctrs}
        if sw is not None:
            try:
                out["pool"] = self._pool_view(self._read_state())
            except KitError as exc:
                out["pool"] = {"error": str(exc)}
        return out

    def _read_state(self) -> PoolState:
        """The pool as the switch has it. Without a session of our own, read through a short
        *backup* session (lowest election id), so `p4cf status` never takes the primary role
        away from a notebook that is driving the lab."""
        if self.conn is not None and self.conn.connected:
            assert self.lb is not None
            return self.lb.state()
        conn = SwitchConnection(self.grpc_addr, self.config.switch.device_id, election_id=(0, 1))
        try:
            conn.connect(timeout=5.0, require_primary=False)
            return LoadBalancer(conn, str(self.config.vip)).state()
        finally:
            conn.close()

    # --- pool --------------------------------------------------------------------------------

    def _host_of(self, ip: str) -> str:
        for h in self.config.hosts:
            if str(h.ip) == ip:
                return h.name
        return ip

    def _pool_view(self, st: PoolState) -> dict[str, Any]:
        return {"vip": st.vip, "base": st.base, "count": st.count,
                "backends": [{"host": self._host_of(nh.ip), "ip": nh.ip, "mac": nh.mac, "port": nh.port}
                             for nh in st.backends]}

    @holds_lab_lock(lambda hosts=None: None if hosts is None else f"setting the pool to {' '.join(hosts)}")
    def pool(self, hosts: Sequence[str] | None = None) -> list[str]:
        """The backend hosts in slot order; with `hosts`, make the pool exactly those (starting
        servers on hosts that run none). Changing the count remaps most flows (hash mod n)."""
        lb = self._connect()
        if hosts is not None:
            targets = [self.config.host(h) for h in hosts]
            for h in targets:
                if h.role == "client":
                    raise ConfigError(f"{h.name} is the client; it cannot be a backend")
            self._ensure_servers(targets)
            lb.set_pool([self.next_hop(h) for h in targets])
        return [self._host_of(nh.ip) for nh in lb.state().backends]

    @holds_lab_lock(lambda host: f"adding backend {host}")
    def add_backend(self, host: str) -> list[str]:
        h = self.config.host(host)
        self._ensure_servers([h])
        self._connect().add_backend(self.next_hop(h))
        return self.pool()

    @holds_lab_lock(lambda host: f"removing backend {host}")
    def remove_backend(self, host: str) -> list[str]:
        self._connect().remove_backend(str(self.config.host(host).ip))
        return self.pool()

    @holds_lab_lock(lambda old, new: f"replacing backend {old} with {new}")
    def replace_backend(self, old: str, new: str) -> list[str]:
        """Put `new` into `old`'s slot (only `old`'s flows move)."""
        h = self.config.host(new)
        self._ensure_servers([h])
        self._connect().replace_backend(str(self.config.host(old).ip), self.next_hop(h))
        return self.pool()

    def move_backend(self, which: str | int, mac: str, ip: str, port: int) -> int:
        """One MODIFY of a backend's slot (migration); `which` is its current IP or slot index."""
        return self._connect().move_backend(which, mac, ip, port)

    def backend_slot(self, which: str | int) -> int:
        """The ecmp_nhop index of a backend (its current IP or slot index), read from the switch."""
        return self._connect().slot_index(which)

    def move_slot(self, index: int, mac: str, ip: str, port: int) -> int:
        """One MODIFY of ecmp_nhop entry `index`, reading nothing first (migration's switch phase)."""
        return self._connect().move_slot(index, mac, ip, port)

    def migrate(self, src: str, dst: str, *, fail_at: str | None = None, migration: int = 1,
                nudge: bool = True, on_phase: Callable[[str], None] | None = None,
                mode: str | None = None) -> MigrationRecord:
        """Live-migrate the backend on host `src` to host `dst` (see `p4cf_kit.migration`);
        `mode` ("stop-and-copy", "lazy", "pre-copy") defaults to the config's migration.mode."""
        from p4cf_kit.migration import migrate
        return migrate(self, src, dst, fail_at=fail_at, migration=migration, nudge=nudge,
                       on_phase=on_phase, mode=mode)

    def experiment(self, migrations: int, *, mode: str | None = None, out: str | Path | None = None,
                   **options: Any) -> ExperimentResult:
        """`migrations` live migrations under traffic, into a results folder (migration/experiment.py);
        `mode` as `migrate`'s, for every migration; `options`: ExperimentOptions' other fields."""
        from p4cf_kit.migration.experiment import ExperimentOptions, run_experiment
        return run_experiment(self, ExperimentOptions(migrations=migrations, mode=mode, **options), out=out)

    def _ensure_servers(self, targets: Sequence[HostConfig]) -> None:
        started = set()
        for h in targets:
            name = self.names.server(h.name)
            machine = self.machine_of(h)
            if not host_ctrs.container_running(name, machine):
                machine.podman("rm", "-f", "-t", "0", name, check=False)
                host_ctrs.start_server(self.config, self.names, h, machine)
                started.add(h.name)
        for h in targets:
            net = self.pod_nets.get(h.name) or pods.pod_net(self.names, h, self.machine_of(h))
            host_ctrs.wait_ready(self.config, self.names, h, net.netns_path, machine=self.machine_of(h))
            if h.name in started:   # a running one already holds its memory (maybe another backend's data)
                self._hold_memory(h)

    def _hold_memory(self, host: HostConfig) -> None:
        """The fresh backend on `host` holds backend.memory_mib: redis is loaded with that much data
        now (apps/bulk.py); the echo server allocated its ballast before listening and says so."""
        mib, name, machine = self.config.backend.memory_mib, self.names.server(host.name), self.machine_of(host)
        if not mib:
            return
        if self.config.workload.kind == "redis":
            bulk.load(machine, name, host.name, self.config.port, mib)
        else:
            check_ballast_held(machine.podman("logs", name).stdout, mib, name)

    # --- traffic and counters ----------------------------------------------------------------

    def traffic(self, connections: int = 32, rate: float = 50.0, duration: float = 0.0,
                log_dir: str | Path | None = None, extra_args: Sequence[str] = ()) -> TrafficRun:
        """Start the client in the client host's pod; returns a handle to read its live CSV and stop it."""
        if connections < 1:
            raise ConfigError(f"connections = {connections}: use 1 or more")
        self._require_images([app.client_image(self.config.workload, self.config.images.client)])
        if log_dir is None:
            log_dir = self.names.state / f"traffic-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}"
        log_dir = Path(log_dir).resolve()
        log_dir.mkdir(parents=True, exist_ok=True)
        name = self.names.client(self.config.client.name)
        LOCAL.podman("rm", "-f", "-t", "0", name, check=False)
        host_ctrs.start_client(self.config, self.names, self.config.client, log_dir, connections, rate,
                               duration, list(extra_args))
        custom = log_dir / app.CUSTOM_CSV if app.client_mode(self.config.workload) == "command" else None
        return TrafficRun(container=name, log_dir=log_dir, csv_path=log_dir / "client.csv", custom_csv=custom)

    @property
    def server_image(self) -> str:
        """The image the backends run (the workload's; see apps/containers.py)."""
        return app.server_image(self.config.workload, self.config.images.server)

    def counters(self) -> pd.DataFrame:
        """Per-next-hop packets/bytes from the switch, with the host each next hop belongs to."""
        lb = self._connect()
        st = lb.state()
        df = read_counters(st.base, st.count)
        df.insert(1, "host", [self._host_of(ip) for ip in df["ip"]])
        return df

    # --- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _require_images(images: Sequence[str]) -> None:
        from p4cf_kit.podman.redis_image import INSTALL_HINT, REDIS_REF
        for image in images:
            if LOCAL.podman("image", "exists", image, check=False).returncode != 0:
                hint = f" ({INSTALL_HINT} first)" if image == REDIS_REF else ""
                raise PrerequisiteError(f"image {image} is missing; build it with `p4cf images build`{hint}")


def config_to_dict_source(cfg: LabConfig) -> dict[str, Any]:
    """A parse_config-able document equivalent to `cfg` (when it was not built from one)."""
    d = config_to_dict(cfg)
    out: dict[str, Any] = {"lab": {k: d["lab"][k] for k in ("name", "vip", "port", "hosts", "client", "backends")},
                           "switch": d["switch"], "images": d["images"], "workload": d["workload"],
                           "backend": d["backend"], "migration": d["migration"]}
    if cfg.machines:
        out["machines"] = {name: {k: v for k, v in m.items()
                                  if v not in ("", [], False) and (k, v) != ("transfer", DEFAULT_TRANSFER)}
                           for name, m in d["machines"].items()}
        out["hosts"] = {h.name: {"machine": h.machine} for h in cfg.remote_hosts}
        if cfg.switch.elsewhere:  # every host off the switch's machine names its NIC toward it
            for h in cfg.hosts:
                if h.machine != cfg.switch.machine:
                    out["hosts"].setdefault(h.name, {})["uplink"] = h.uplink
    return out
