"""Lab configuration: a TOML (or YAML) file turned into typed, validated dataclasses.

Why one module: every other room reads the lab through these types and never
parses files itself, so a bad value is reported once, here, naming the field.

Layout (all keys optional; the defaults are the classic four-host lab):

    [lab]
    name = "default"          # label p4cf.lab=<name>; other names prefix objects p4cf-<name>-
    vip = "10.0.0.100"        # virtual IP, outside every host subnet
    port = 8000               # TCP port of the servers behind the VIP
    hosts = 4                 # h1..hN, 2..8
    client = "h1"
    backends = ["h2", "h3"]   # hosts not named are idle (migration targets)
    subnet_pattern = "10.0.{n}.0/24"

    [switch]
    target = "embedded"       # or "bmv2" (simple_switch_grpc; see p4cf_kit.switch.targets)
    grpc_addr = ""            # empty: a unix socket in the state dir (netns mode) or 127.0.0.1:9559
    device_id = 1
    netns = true              # switch ports live in a kit netns (no kernel path at all)
    datapath = "auto"         # embedded switch: "ebpf" (kernel fast path), "user", or auto
    # machine = "b"           # run it on machine b (switch/elsewhere.py); hosts elsewhere need uplinks

    [images]
    server = "localhost/p4cf-tcp-server:latest"
    client = "localhost/p4cf-tcp-client:latest"

    [workload]                # what the backends run: echo | redis | http | custom (apps/settings.py)
    kind = "echo"

    [backend]
    memory_mib = 0            # MiB each backend holds: echo's ballast, redis's bulk data (was ballast_mib)

    [migration]
    mode = "stop-and-copy"    # or "lazy" (pages follow on demand) or "pre-copy"; see migration/modes.py

    [machines.b]              # a second machine (hosts default to "local", this one)
    podman = "ssh://root@192.0.2.2:22/run/podman/podman.sock"   # Podman's remote URL
    identity = "/root/.ssh/id_ed25519"   # SSH key (keys only; no passwords in configs)
    known_hosts = "/root/.ssh/known_hosts"  # host keys are always checked (default: root's)
    uplinks = ["enp1s0"]      # NICs cabled to the switch, one per host placed there
    # emulated = true         # instead: the stand-in made by `p4cf machine emulate b`

    [hosts.h4]
    machine = "b"             # h4's network, pod and containers live on machine b

    [switch.ports]            # the switch side of each remote host's cable (switch machine's NIC)
    4 = "enp3s0f1"            # (not needed for an emulated machine: the kit made the cable)

A switch the kit does not run (a hardware switch's P4Runtime agent, someone's BMv2):

    [switch]
    target = "remote"
    grpc_addr = "192.0.2.10:9559"
    p4info = "lb.p4info.txtpb"          # the load balancer compiled for that switch
    device_config = "lb.bin"            # its device config (empty if omitted)
    # insecure = true                   # plain text off loopback: only on a closed testbed
    [switch.tls]                        # else required off loopback
    ca = "ca.pem"                       # signed the switch's certificate
    cert = "p4cf.pem"                   # with key: the kit's client certificate (mutual TLS)
    key = "p4cf.key"
    [switch.ports]                      # port map: switch port = "MACHINE:NIC" cabled to it
    1 = "local:enp1s0"                  # this machine's hosts take the local: NICs in port order
    3 = "b:enp1s0"                      # a host on machine b, whose uplink is enp1s0

Addresses per host hN (n = N): subnet from `subnet_pattern`, host .10, the switch
gateway .254 (an address nobody owns: hosts reach it through a static neighbour
entry whose MAC is switch port N's), MACs 02:cf:00:<lab byte>:01:<n> for hosts and
02:cf:00:<lab byte>:02:<n> for switch ports.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from p4cf_kit.apps.settings import WorkloadConfig, parse_workload, workload_to_dict
from p4cf_kit.errors import ConfigError
from p4cf_kit.labels import NAME_PREFIX

DEFAULT_LAB = "default"
TARGETS = ("embedded", "bmv2", "remote")
ROLES = ("client", "backend", "idle")
MIN_HOSTS, MAX_HOSTS = 2, 8
_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,5}$")


LOCAL_MACHINE = "local"
TRANSFERS = ("ssh", "tcp")
DEFAULT_TRANSFER = "tcp"   # the faster way (README, "How the images cross")


@dataclass(frozen=True)
class MachineConfig:
    """A machine of the lab other than this one, reached over SSH (see p4cf_kit.machines)."""

    name: str
    podman: str = ""              # ssh://USER@HOST:PORT/path/podman.sock
    identity: str = ""            # SSH private key
    known_hosts: str = ""         # host keys to trust; empty: root's ~/.ssh/known_hosts
    uplinks: tuple[str, ...] = ()  # NICs toward the switch; hosts take them in index order
    emulated: bool = False        # the stand-in of `p4cf machine emulate NAME`
    transfer: str = DEFAULT_TRANSFER  # checkpoint images as a direct stream (plain text), or "ssh": over SSH
    python: str = ""              # a Python with p4cf_kit there: runs the embedded switch on it
    simple_switch_grpc: str = ""  # BMv2 there (default: found on its PATH or in /opt/p4lang/bin)


@dataclass(frozen=True)
class HostConfig:
    """One emulated host hN: its own Podman network, pod, and switch port N."""

    name: str
    index: int
    role: str
    subnet: ipaddress.IPv4Network
    ip: ipaddress.IPv4Address
    mac: str
    gateway: ipaddress.IPv4Address
    switch_mac: str
    machine: str = LOCAL_MACHINE
    uplink: str = ""              # its NIC toward the switch (remote machine, or a remote switch)
    switch_port: int = 0          # a remote switch's port cabled to it (0: the kit's port = index)

    @property
    def port(self) -> int:
        """Switch port number of this host: its index on the kit's switch, the port map's on a remote one."""
        return self.switch_port or self.index


@dataclass(frozen=True)
class SwitchConfig:
    """Which switch target runs, and where its P4Runtime server listens."""

    target: str = "embedded"
    grpc_addr: str = ""
    device_id: int = 1
    netns: bool = True
    datapath: str = "auto"  # the embedded switch's --datapath
    ports: dict[int, str] = field(default_factory=dict)  # port -> NIC cabled to a remote machine
    machine: str = LOCAL_MACHINE  # where the kit runs its switch (embedded or bmv2)
    # target = "remote" (a P4Runtime server the kit does not run): the user's pipeline files,
    # TLS files, and the port map's values as "MACHINE:NIC".
    p4info: str = ""
    device_config: str = ""
    tls: TlsConfig | None = None
    insecure: bool = False

    @property
    def remote(self) -> bool:
        return self.target == "remote"

    @property
    def elsewhere(self) -> bool:
        """The kit runs this switch on another machine of the lab (started and reached over SSH)."""
        return not self.remote and self.machine != LOCAL_MACHINE


@dataclass(frozen=True)
class TlsConfig:
    """P4Runtime over TLS: the CA that signed the switch's certificate, and the kit's own
    certificate and key when the switch asks for a client certificate (mutual TLS)."""

    ca: str
    cert: str = ""
    key: str = ""


SWITCH_DATAPATHS = ("auto", "ebpf", "user")  # p4cf_kit.switch.embedded.target.DATAPATHS


@dataclass(frozen=True)
class ImagesConfig:
    """Container images of the workload."""

    server: str = "localhost/p4cf-tcp-server:latest"
    client: str = "localhost/p4cf-tcp-client:latest"


MIGRATION_MODES = ("stop-and-copy", "lazy", "pre-copy")   # p4cf_kit.migration.modes
MAX_MEMORY_MIB = 64 * 1024
MEMORY_KINDS = ("echo", "redis")   # the workloads that can hold backend.memory_mib


@dataclass(frozen=True)
class BackendConfig:
    """The memory each backend holds beyond its own: the echo server's ballast
    (workload/ballast.py) or the data loaded into redis (apps/bulk.py)."""

    memory_mib: int = 0

    @property
    def ballast_mib(self) -> int:
        """The older name of `memory_mib` (configs and code from before redis could hold memory)."""
        return self.memory_mib


@dataclass(frozen=True)
class MigrationConfig:
    """How migrations move memory unless a migration names its own mode."""

    mode: str = "stop-and-copy"


@dataclass(frozen=True)
class LabConfig:
    """A whole lab: hosts, VIP, switch, images. Build it with `parse_config` or `load_config`."""

    name: str
    vip: ipaddress.IPv4Address
    port: int
    hosts: tuple[HostConfig, ...]
    switch: SwitchConfig = field(default_factory=SwitchConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    machines: dict[str, MachineConfig] = field(default_factory=dict)
    backend: BackendConfig = field(default_factory=BackendConfig)
    migration: MigrationConfig = field(default_factory=MigrationConfig)
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    source: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def remote_hosts(self) -> tuple[HostConfig, ...]:
        return tuple(h for h in self.hosts if h.machine != LOCAL_MACHINE)

    @property
    def client(self) -> HostConfig:
        return next(h for h in self.hosts if h.role == "client")

    @property
    def backends(self) -> tuple[HostConfig, ...]:
        return tuple(h for h in self.hosts if h.role == "backend")

    @property
    def idle(self) -> tuple[HostConfig, ...]:
        return tuple(h for h in self.hosts if h.role == "idle")

    def host(self, name: str) -> HostConfig:
        """The host called `name` (e.g. "h2"); ConfigError lists the valid names."""
        for h in self.hosts:
            if h.name == name:
                return h
        raise ConfigError(f"unknown host {name!r}: this lab has {', '.join(h.name for h in self.hosts)}")

    @property
    def prefix(self) -> str:
        """Name prefix of this lab's Podman objects: `p4cf-` for the default lab, else `p4cf-<name>-`."""
        return NAME_PREFIX if self.name == DEFAULT_LAB else f"{NAME_PREFIX}{self.name}-"


def _section(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{key}] must be a table, got {type(value).__name__}")
    return dict(value)


def _check_keys(section: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"[{section}] has unknown key(s) {', '.join(unknown)}; "
                          f"allowed: {', '.join(sorted(allowed))}")


def _int(section: str, key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{section}.{key} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{section}.{key} = {value} is out of range; use {lo}..{hi}")
    return value


def _lab_byte(name: str) -> int:
    """A per-lab byte in MACs, so two labs on one machine never share a MAC."""
    return 0 if name == DEFAULT_LAB else 1 + hashlib.sha256(name.encode()).digest()[0] % 254


def _hosts(lab: dict[str, Any], name: str) -> tuple[HostConfig, ...]:
    count = _int("lab", "hosts", lab.get("hosts", 4), MIN_HOSTS, MAX_HOSTS)
    names = [f"h{n}" for n in range(1, count + 1)]
    client = lab.get("client", "h1")
    if client not in names:
        raise ConfigError(f"lab.client = {client!r} is not a host of this lab ({', '.join(names)})")
    backends = lab.get("backends", [n for n in ("h2", "h3") if n in names and n != client])
    if not isinstance(backends, list) or not all(isinstance(b, str) for b in backends):
        raise ConfigError(f"lab.backends must be a list of host names, got {backends!r}")
    for b in backends:
        if b not in names:
            raise ConfigError(f"lab.backends names {b!r}, which is not a host ({', '.join(names)})")
    if client in backends:
        raise ConfigError(f"lab.backends contains the client {client!r}; a host is either client or backend")
    if len(set(backends)) != len(backends):
        raise ConfigError(f"lab.backends lists a host twice: {backends}")
    if not backends:
        raise ConfigError("lab.backends is empty; name at least one backend host, e.g. backends = [\"h2\"]")
    pattern = lab.get("subnet_pattern", "10.0.{n}.0/24")
    if not isinstance(pattern, str) or "{n}" not in pattern:
        raise ConfigError(f"lab.subnet_pattern = {pattern!r} must contain '{{n}}', e.g. \"10.0.{{n}}.0/24\"")
    lab_byte = _lab_byte(name)
    hosts: list[HostConfig] = []
    for n, host_name in enumerate(names, start=1):
        try:
            subnet = ipaddress.IPv4Network(pattern.format(n=n))
        except ValueError as exc:
            raise ConfigError(f"lab.subnet_pattern gives an invalid subnet for {host_name}: {exc}") from exc
        if subnet.num_addresses < 256:
            raise ConfigError(f"lab.subnet_pattern: {subnet} is smaller than a /24; use /24 or larger")
        role = "client" if host_name == client else "backend" if host_name in backends else "idle"
        hosts.append(HostConfig(
            name=host_name, index=n, role=role, subnet=subnet,
            ip=subnet.network_address + 10, gateway=subnet.network_address + 254,
            mac=f"02:cf:00:{lab_byte:02x}:01:{n:02x}",
            switch_mac=f"02:cf:00:{lab_byte:02x}:02:{n:02x}"))
    for a in hosts:
        for b in hosts:
            if a.index < b.index and a.subnet.overlaps(b.subnet):
                raise ConfigError(f"lab.subnet_pattern gives overlapping subnets {a.subnet} ({a.name}) "
                                  f"and {b.subnet} ({b.name})")
    return tuple(hosts)


def _switch(raw: dict[str, Any]) -> SwitchConfig:
    _check_keys("switch", raw, {"target", "grpc_addr", "device_id", "netns", "datapath", "ports",
                                "p4info", "device_config", "tls", "insecure", "machine"})
    target = raw.get("target", "embedded")
    if target not in TARGETS:
        raise ConfigError(f"switch.target = {target!r} is not supported; use one of {', '.join(TARGETS)}")
    grpc_addr = raw.get("grpc_addr", "")
    if not isinstance(grpc_addr, str):
        raise ConfigError("switch.grpc_addr must be a string like \"127.0.0.1:9559\" or \"unix:/path\"")
    machine = raw.get("machine", LOCAL_MACHINE)
    if not isinstance(machine, str) or not machine:
        raise ConfigError(f"switch.machine must name a machine of the lab (or \"local\"), got {machine!r}")
    if target == "remote":
        if machine != LOCAL_MACHINE:
            raise ConfigError("switch.machine applies to the kit's own switches; a remote switch is wherever "
                              "its grpc_addr is: remove switch.machine")
        return _remote_switch(raw, grpc_addr)
    for key in ("p4info", "device_config", "tls", "insecure"):
        if key in raw:
            raise ConfigError(f"switch.{key} applies to switch.target = \"remote\" only (the kit brings "
                              f"its own pipeline and talks to its own switch locally); remove it")
    netns = raw.get("netns", True)
    if not isinstance(netns, bool):
        raise ConfigError(f"switch.netns must be true or false, got {netns!r}")
    if grpc_addr and not grpc_addr.startswith("unix:"):
        host, sep, port = grpc_addr.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"switch.grpc_addr = {grpc_addr!r} needs HOST:PORT (e.g. 127.0.0.1:9559) or unix:/path")
        if netns and host.strip("[]") in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(
                f"switch.grpc_addr = {grpc_addr!r} is loopback, but with switch.netns = true the switch's "
                "loopback is inside its own netns and unreachable; leave grpc_addr empty (a unix socket "
                "is used) or set switch.netns = false")
    device_id = _int("switch", "device_id", raw.get("device_id", 1), 0, 2**32 - 1)
    datapath = raw.get("datapath", "auto")
    if datapath not in SWITCH_DATAPATHS:
        raise ConfigError(f"switch.datapath = {datapath!r} is not one of {', '.join(SWITCH_DATAPATHS)}")
    if datapath != "auto" and target != "embedded":
        raise ConfigError(f"switch.datapath = {datapath!r} applies to the embedded switch only; "
                          f"remove it or set switch.target = \"embedded\"")
    if target == "bmv2" and not netns:
        raise ConfigError("switch.netns = false with switch.target = \"bmv2\": BMv2 serves its Thrift "
                          "runtime on every address of its netns, so the kit runs it only in the lab's "
                          "switch netns; set switch.netns = true (the default)")
    ports_raw = raw.get("ports", {})
    if not isinstance(ports_raw, Mapping):
        raise ConfigError("[switch.ports] must be a table of port number = \"interface\", e.g. 4 = \"enp3s0f1\"")
    ports: dict[int, str] = {}
    for key, iface in ports_raw.items():
        if not str(key).isdigit() or not isinstance(iface, str) or not iface:
            raise ConfigError(f"switch.ports: {key!r} = {iface!r}; write port number = \"interface\", "
                              "e.g. 4 = \"enp3s0f1\"")
        ports[int(key)] = iface
    if machine != LOCAL_MACHINE:
        if not netns:
            raise ConfigError(f"switch.machine = {machine!r} needs switch.netns = true (the switch's ports "
                              "live in a kit namespace on that machine)")
        if grpc_addr:
            raise ConfigError(f"switch.grpc_addr with switch.machine = {machine!r}: the switch serves "
                              "P4Runtime on a unix socket there that the kit forwards over SSH; remove grpc_addr")
    return SwitchConfig(target=target, grpc_addr=grpc_addr, device_id=device_id, netns=netns,
                        datapath=datapath, ports=ports, machine=machine)


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _path_key(section: str, raw: Mapping[str, Any], key: str, required: bool = False) -> str:
    """A file named by the config: absolute (relative ones are taken from the working directory
    here; `load_config` has already made them relative to the config file), and existing."""
    value = raw.get(key, "")
    if value == "" and not required:
        return ""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{section}.{key} must name a file, e.g. {key} = \"/etc/p4cf/{key}.pem\"")
    path = Path(value).expanduser().absolute()
    if not path.is_file():
        raise ConfigError(f"{section}.{key} = {value!r}: no such file ({path}); fix the path")
    return str(path)


def _remote_switch(raw: dict[str, Any], grpc_addr: str) -> SwitchConfig:
    """target = "remote": a P4Runtime server the kit only programs (a hardware switch's agent,
    a BMv2 someone else runs). Plain text is accepted only where nobody else can listen in."""
    if not grpc_addr:
        raise ConfigError("switch.target = \"remote\" needs switch.grpc_addr, the switch's P4Runtime "
                          "address, e.g. grpc_addr = \"192.0.2.10:9559\"")
    host = ""
    if not grpc_addr.startswith("unix:"):
        host, sep, port = grpc_addr.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"switch.grpc_addr = {grpc_addr!r} needs HOST:PORT (e.g. 192.0.2.10:9559) or unix:/path")
    # netns has no meaning here and a config grown from the default one carries it: accept any
    # true/false. A data path choice, though, would be a wish nobody can grant: refuse it.
    if not isinstance(raw.get("netns", False), bool):
        raise ConfigError(f"switch.netns must be true or false, got {raw['netns']!r}")
    if raw.get("datapath", "auto") != "auto":
        raise ConfigError("switch.datapath applies to the kit's own switches, not to target = \"remote\"; remove it")
    insecure = raw.get("insecure", False)
    if not isinstance(insecure, bool):
        raise ConfigError(f"switch.insecure must be true or false, got {insecure!r}")
    tls_raw = raw.get("tls")
    tls = None
    if tls_raw is not None:
        if not isinstance(tls_raw, Mapping):
            raise ConfigError("[switch.tls] must be a table: ca = \"ca.pem\", and cert/key for mutual TLS")
        _check_keys("switch.tls", tls_raw, {"ca", "cert", "key"})
        tls = TlsConfig(ca=_path_key("switch.tls", tls_raw, "ca", required=True),
                        cert=_path_key("switch.tls", tls_raw, "cert"), key=_path_key("switch.tls", tls_raw, "key"))
        if bool(tls.cert) != bool(tls.key):
            raise ConfigError("switch.tls: give cert and key together (the kit's client certificate and its "
                              "private key), or neither")
        if insecure:
            raise ConfigError("switch.insecure = true and [switch.tls] contradict each other; keep one")
        if grpc_addr.startswith("unix:"):
            raise ConfigError("switch.tls with a unix socket: TLS is for network addresses; remove [switch.tls]")
    elif not insecure and not grpc_addr.startswith("unix:") and host.strip("[]") not in _LOOPBACK:
        raise ConfigError(f"switch.grpc_addr = {grpc_addr!r} is a network address and no [switch.tls] is given: "
                          "anyone on that network could read or reprogram the switch. Give the switch's CA "
                          "(and the kit's cert/key for mutual TLS) in [switch.tls], or, on a closed testbed "
                          "network, say so with insecure = true")
    ports_raw = raw.get("ports", {})
    if not isinstance(ports_raw, Mapping) or not ports_raw:
        raise ConfigError("switch.target = \"remote\" needs a port map: [switch.ports] with switch port number = "
                          "\"MACHINE:NIC\" for each cable, e.g. 1 = \"local:enp1s0\", 2 = \"b:enp1s0\"")
    ports: dict[int, str] = {}
    for key, where in ports_raw.items():
        machine, sep, nic = str(where).partition(":") if isinstance(where, str) else ("", "", "")
        if not str(key).isdigit() or not sep or not machine or not nic:
            raise ConfigError(f"switch.ports: {key!r} = {where!r}; on a remote switch write port number = "
                              "\"MACHINE:NIC\" (the NIC on that machine cabled to the port), e.g. 1 = \"local:enp1s0\"")
        if where in ports.values():
            raise ConfigError(f"switch.ports: {where!r} is cabled to two ports; each NIC reaches one port")
        ports[int(key)] = where
    device_id = _int("switch", "device_id", raw.get("device_id", 1), 0, 2**32 - 1)
    return SwitchConfig(target="remote", grpc_addr=grpc_addr, device_id=device_id, netns=False, ports=ports,
                        p4info=_path_key("switch", raw, "p4info", required=True),
                        device_config=_path_key("switch", raw, "device_config"), tls=tls, insecure=insecure)


def _cable_hosts(hosts: tuple[HostConfig, ...], switch: SwitchConfig,
                 machines: dict[str, MachineConfig]) -> tuple[HostConfig, ...]:
    """On a remote switch every host reaches it through a NIC: this machine's hosts take the
    `local:` entries of the port map in port order; other machines' hosts the entry that names
    their uplink. Each host's switch port is the port map's."""
    for port, where in switch.ports.items():
        machine = where.partition(":")[0]
        if machine != LOCAL_MACHINE and machine not in machines:
            raise ConfigError(f"switch.ports: {port} = {where!r} names machine {machine!r}, which is not in "
                              f"this lab; add [machines.{machine}] or write \"local:NIC\" for this machine")
    local = sorted((p, w.partition(":")[2]) for p, w in switch.ports.items() if w.startswith(LOCAL_MACHINE + ":"))
    by_cable = {w: p for p, w in switch.ports.items()}
    out: list[HostConfig] = []
    for h in hosts:
        if h.machine == LOCAL_MACHINE:
            i = sum(1 for o in out if o.machine == LOCAL_MACHINE)
            if i >= len(local):
                raise ConfigError(f"{h.name} runs on this machine, but the port map cables only {len(local)} "
                                  "of this machine's NICs to the switch; add [switch.ports] N = \"local:NIC\"")
            port, nic = local[i]
        else:
            port = by_cable.get(f"{h.machine}:{h.uplink}", 0)
            nic = h.uplink
            if not port:
                raise ConfigError(f"{h.name} is on machine {h.machine!r} with uplink {h.uplink!r}: say which switch "
                                  f"port it is cabled to, e.g. [switch.ports] 3 = \"{h.machine}:{h.uplink}\"")
        out.append(replace(h, uplink=nic, switch_port=port))
    return tuple(out)


def _machines(raw: dict[str, Any]) -> dict[str, MachineConfig]:
    out: dict[str, MachineConfig] = {}
    for name, entry in raw.items():
        where = f"[machines.{name}]"
        if not _NAME_RE.match(name) or name == LOCAL_MACHINE:
            raise ConfigError(f"{where}: machine names are 1-6 lowercase letters/digits starting with a "
                              "letter, and not \"local\" (this machine needs no entry)")
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} must be a table")
        _check_keys(f"machines.{name}", entry, {"podman", "identity", "known_hosts", "uplinks", "uplink",
                                                "emulated", "password", "transfer", "python",
                                                "simple_switch_grpc"})
        transfer = entry.get("transfer", DEFAULT_TRANSFER)
        if transfer not in TRANSFERS:
            raise ConfigError(f"machines.{name}.transfer = {transfer!r}: use \"ssh\" (encrypted) or \"tcp\" "
                              "(a direct stream in plain text, for a testbed's own link)")
        if "password" in entry:
            raise ConfigError(f"{where}: passwords are not accepted in configs; use an SSH key: "
                              "identity = \"/root/.ssh/id_ed25519\"")
        emulated = entry.get("emulated", False)
        if not isinstance(emulated, bool):
            raise ConfigError(f"machines.{name}.emulated must be true or false")
        uplinks = entry.get("uplinks", [entry["uplink"]] if "uplink" in entry else [])
        if isinstance(uplinks, str):
            uplinks = [uplinks]
        if not isinstance(uplinks, list) or not all(isinstance(u, str) and u for u in uplinks):
            raise ConfigError(f"machines.{name}.uplinks must be a list of interface names, e.g. [\"enp1s0\"]")
        podman = entry.get("podman", "" if emulated else LOCAL_MACHINE)
        if podman == LOCAL_MACHINE:
            raise ConfigError(f"machines.{name}.podman = \"local\": this machine needs no [machines] entry; "
                              "give a remote URL such as \"ssh://root@HOST:22/run/podman/podman.sock\"")
        for key in ("podman", "identity", "known_hosts", "python", "simple_switch_grpc"):
            if not isinstance(entry.get(key, ""), str):
                raise ConfigError(f"machines.{name}.{key} must be a string")
        if not emulated:
            from p4cf_kit.machines.ssh import parse_podman_url
            parse_podman_url(podman, f"machines.{name}.podman")
            if not entry.get("identity"):
                raise ConfigError(f"machines.{name}.identity is missing: the kit logs in with an SSH key, "
                                  "e.g. identity = \"/root/.ssh/id_ed25519\"")
        out[name] = MachineConfig(name=name, podman=podman, identity=entry.get("identity", ""),
                                  known_hosts=entry.get("known_hosts", ""), uplinks=tuple(uplinks),
                                  emulated=emulated, transfer=transfer, python=entry.get("python", ""),
                                  simple_switch_grpc=entry.get("simple_switch_grpc", ""))
    return out


def _place_hosts(hosts: tuple[HostConfig, ...], raw: dict[str, Any],
                 machines: dict[str, MachineConfig],
                 switch_machine: str = LOCAL_MACHINE) -> tuple[HostConfig, ...]:
    """Put each host on its machine (`[hosts.hN] machine = "NAME"`) and give it an uplink there:
    every host but those on the switch's own machine reaches the switch through a NIC."""
    names = {h.name for h in hosts}
    for key, entry in raw.items():
        if key not in names:
            raise ConfigError(f"[hosts.{key}]: this lab has no host {key!r} ({', '.join(sorted(names))})")
        if not isinstance(entry, Mapping):
            raise ConfigError(f"[hosts.{key}] must be a table")
        _check_keys(f"hosts.{key}", entry, {"machine", "uplink"})
    placed = []
    taken: dict[str, int] = {}
    for h in hosts:
        machine = raw.get(h.name, {}).get("machine", LOCAL_MACHINE)
        if machine != LOCAL_MACHINE and machine not in machines:
            raise ConfigError(f"hosts.{h.name}.machine = {machine!r} is not a machine of this lab; add "
                              f"[machines.{machine}] or use one of: local, {', '.join(machines) or '(none)'}")
        uplink = ""
        given = raw.get(h.name, {}).get("uplink", "")
        if not isinstance(given, str):
            raise ConfigError(f"hosts.{h.name}.uplink must be an interface name, e.g. uplink = \"enp1s0\"")
        if machine == switch_machine:
            if given:
                raise ConfigError(f"hosts.{h.name}.uplink: {h.name} runs on the switch's own machine "
                                  f"({machine!r}) and gets a port there; remove uplink")
        elif given:
            uplink = given
        elif machine == LOCAL_MACHINE:  # the switch runs on another machine
            i = taken.get(machine, 0)
            taken[machine] = i + 1
            if not machines[switch_machine].emulated:
                raise ConfigError(f"{h.name} runs on this machine and the switch on {switch_machine!r}: name "
                                  f"this machine's NIC cabled to it, [hosts.{h.name}] uplink = \"enp1s0\"")
            from p4cf_kit.machines.emulated import cable_iface
            uplink = cable_iface(switch_machine, i)  # the emulated machine's cables, in order
        else:
            mc = machines[machine]
            i = taken.get(machine, 0)
            taken[machine] = i + 1
            if mc.uplinks:
                if i >= len(mc.uplinks):
                    raise ConfigError(f"machine {machine!r} has {len(mc.uplinks)} uplink(s) "
                                      f"({', '.join(mc.uplinks)}) but more hosts are placed on it; each host "
                                      "there needs its own NIC toward the switch: add one to "
                                      f"machines.{machine}.uplinks")
                uplink = mc.uplinks[i]
            elif not mc.emulated:
                raise ConfigError(f"machines.{machine}.uplinks is missing: name the NIC cabled to the switch, "
                                  "e.g. uplinks = [\"enp1s0\"]")
            else:
                uplink = f"up{i}"  # the emulated machine's cables, in order
        placed.append(replace(h, machine=machine, uplink=uplink))
    return tuple(placed)


def _images(raw: dict[str, Any]) -> ImagesConfig:
    _check_keys("images", raw, {"server", "client"})
    out = ImagesConfig(**{k: v for k, v in raw.items()})
    for key in ("server", "client"):
        if not isinstance(getattr(out, key), str) or not getattr(out, key):
            raise ConfigError(f"images.{key} must be an image reference such as localhost/p4cf-tcp-{key}:latest")
    return out


def _backend(raw: dict[str, Any]) -> BackendConfig:
    """`memory_mib`, or its older name `ballast_mib` (old configs keep working; both must agree)."""
    _check_keys("backend", raw, {"memory_mib", "ballast_mib"})
    values = {key: _int("backend", key, raw[key], 0, MAX_MEMORY_MIB) for key in ("memory_mib", "ballast_mib")
              if key in raw}
    if len(set(values.values())) > 1:
        raise ConfigError(f"backend.memory_mib = {values['memory_mib']} and backend.ballast_mib = "
                          f"{values['ballast_mib']} disagree; ballast_mib is the older name of memory_mib: "
                          "keep memory_mib only")
    return BackendConfig(memory_mib=next(iter(values.values()), 0))


def check_memory_kind(memory_mib: int, kind: str) -> None:
    """Only the echo server (its ballast) and redis (loaded with data) hold a set memory size."""
    if memory_mib and kind not in MEMORY_KINDS:
        raise ConfigError(f"backend.memory_mib = {memory_mib} applies to the echo workload (a ballast its server "
                          f"holds) and to redis (data loaded into it) only; workload.kind is {kind!r}: "
                          "set backend.memory_mib = 0")


def _migration(raw: dict[str, Any]) -> MigrationConfig:
    _check_keys("migration", raw, {"mode"})
    mode = raw.get("mode", "stop-and-copy")
    if mode not in MIGRATION_MODES:
        raise ConfigError(f"migration.mode = {mode!r}: use one of {', '.join(MIGRATION_MODES)}")
    return MigrationConfig(mode=mode)


def parse_config(raw: Mapping[str, Any] | None = None) -> LabConfig:
    """Validate a parsed config document (dict) and return the typed LabConfig."""
    raw = _files_from(dict(raw or {}), Path.cwd())
    _check_keys("top level", raw, {"lab", "switch", "images", "machines", "hosts", "workload", "backend",
                                   "migration"})
    lab = _section(raw, "lab")
    _check_keys("lab", lab, {"name", "vip", "port", "hosts", "client", "backends", "subnet_pattern"})
    name = lab.get("name", DEFAULT_LAB)
    if not isinstance(name, str) or (name != DEFAULT_LAB and not _NAME_RE.match(name)):
        raise ConfigError(f"lab.name = {name!r}: use \"default\" or 1-6 lowercase letters/digits starting "
                          "with a letter (it becomes part of interface names, which are limited to 15 characters)")
    hosts = _hosts(lab, name)
    try:
        vip = ipaddress.IPv4Address(lab.get("vip", "10.0.0.100"))
    except ValueError as exc:
        raise ConfigError(f"lab.vip = {lab.get('vip')!r} is not an IPv4 address") from exc
    for h in hosts:
        if vip in h.subnet:
            raise ConfigError(f"lab.vip = {vip} lies inside {h.name}'s subnet {h.subnet}; choose a VIP outside "
                              "every host subnet (e.g. 10.0.0.100)")
    port = _int("lab", "port", lab.get("port", 8000), 1, 65535)
    workload = parse_workload(_section(raw, "workload"))
    if workload.port is not None:  # the application's port is the VIP's (it overrides lab.port)
        port = workload.port
    backend = _backend(_section(raw, "backend"))
    check_memory_kind(backend.memory_mib, workload.kind)
    machines = _machines(_section(raw, "machines"))
    switch = _switch(_section(raw, "switch"))
    if switch.machine != LOCAL_MACHINE and switch.machine not in machines:
        raise ConfigError(f"switch.machine = {switch.machine!r} is not a machine of this lab; add "
                          f"[machines.{switch.machine}] or use one of: local, {', '.join(machines) or '(none)'}")
    hosts = _place_hosts(hosts, _section(raw, "hosts"), machines, switch.machine)
    if switch.remote:
        hosts = _cable_hosts(hosts, switch, machines)
    for h in hosts:
        if switch.remote or h.machine == switch.machine or h.port in switch.ports:
            continue
        if switch.elsewhere and (h.machine != LOCAL_MACHINE or not machines[switch.machine].emulated):
            raise ConfigError(f"{h.name} is on machine {h.machine!r}: name the NIC of the switch's machine "
                              f"{switch.machine!r} cabled to its uplink {h.uplink}, e.g. [switch.ports] "
                              f"{h.port} = \"enp3s0f1\"")
        if not switch.elsewhere and not machines[h.machine].emulated:
            raise ConfigError(f"{h.name} is on machine {h.machine!r}: name the switch's NIC cabled to its "
                              f"uplink {h.uplink}, e.g. [switch.ports] {h.port} = \"enp3s0f1\"")
    client = next(h for h in hosts if h.role == "client")
    if client.machine != LOCAL_MACHINE:
        raise ConfigError(f"the client {client.name} must run on this machine (its log is read here); "
                          f"remove [hosts.{client.name}] machine or pick another client")
    if any(h.machine != LOCAL_MACHINE for h in hosts) and not switch.netns and not switch.remote:
        raise ConfigError("hosts on other machines need switch.netns = true (their cables become the "
                          "switch's ports inside its namespace)")
    return LabConfig(name=name, vip=vip, port=port, hosts=hosts, switch=switch,
                     images=_images(_section(raw, "images")), machines=machines, workload=workload,
                     backend=backend, migration=_migration(_section(raw, "migration")),
                     source=raw)


def load_config(path: str | Path | None = None) -> LabConfig:
    """Read a lab config file (.toml, or .yaml/.yml); None gives the packaged default."""
    if path is None:
        path = Path(__file__).resolve().parent / "configs" / "default.toml"
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing .toml or .yaml file")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml
            raw = yaml.safe_load(text) or {}
        else:
            raw = tomllib.loads(text)
    except Exception as exc:  # the parsers' own error types differ
        raise ConfigError(f"{path}: cannot parse: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a table/mapping")
    return parse_config(_files_from(raw, path.resolve().parent))


def _files_from(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """The switch's files (pipeline, TLS) named relative to the config file, made absolute, so
    the lab's saved config means the same from any working directory."""
    switch = raw.get("switch")
    if not isinstance(switch, dict):
        return raw

    def fix(table: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
        return {k: str(base / v) if k in keys and isinstance(v, str) and v and not Path(v).expanduser().is_absolute()
                else v for k, v in table.items()}

    switch = fix(switch, ("p4info", "device_config"))
    if isinstance(switch.get("tls"), dict):
        switch["tls"] = fix(switch["tls"], ("ca", "cert", "key"))
    return {**raw, "switch": switch}


def default_config(hosts: int = 4, workload: str | Mapping[str, Any] | None = None, **lab: Any) -> LabConfig:
    """The classic lab with `hosts` hosts (h1 client, h2 h3 backends, the rest idle); keyword overrides go to
    [lab]; `workload` is a kind ("redis") or a whole [workload] table."""
    table = {} if workload is None else {"kind": workload} if isinstance(workload, str) else dict(workload)
    return parse_config({"lab": {"hosts": hosts, **lab}, "workload": table})


def config_to_dict(cfg: LabConfig) -> dict[str, Any]:
    """A plain, JSON-able view of the resolved config (for status and results folders)."""
    return {
        "lab": {"name": cfg.name, "vip": str(cfg.vip), "port": cfg.port, "hosts": len(cfg.hosts),
                "client": cfg.client.name, "backends": [b.name for b in cfg.backends]},
        "switch": {"target": cfg.switch.target, "grpc_addr": cfg.switch.grpc_addr,
                   "device_id": cfg.switch.device_id, "netns": cfg.switch.netns,
                   "datapath": cfg.switch.datapath, "ports": {str(k): v for k, v in cfg.switch.ports.items()},
                   **({"machine": cfg.switch.machine} if cfg.switch.elsewhere else {}),
                   **({"p4info": cfg.switch.p4info, "device_config": cfg.switch.device_config,
                       "tls": cfg.switch.tls.__dict__ if cfg.switch.tls else None,
                       "insecure": cfg.switch.insecure} if cfg.switch.remote else {})},
        "images": {"server": cfg.images.server, "client": cfg.images.client},
        "backend": {"memory_mib": cfg.backend.memory_mib},
        "migration": {"mode": cfg.migration.mode},
        "hosts": [{"name": h.name, "role": h.role, "subnet": str(h.subnet), "ip": str(h.ip), "mac": h.mac,
                   "gateway": str(h.gateway), "switch_mac": h.switch_mac, "port": h.port,
                   "machine": h.machine, "uplink": h.uplink} for h in cfg.hosts],
        "machines": {m.name: {"podman": m.podman, "identity": m.identity, "known_hosts": m.known_hosts,
                              "uplinks": list(m.uplinks), "emulated": m.emulated, "transfer": m.transfer,
                              "python": m.python, "simple_switch_grpc": m.simple_switch_grpc}
                     for m in cfg.machines.values()},
        "workload": workload_to_dict(cfg.workload),
    }


def with_workload(cfg: LabConfig, workload: str | Mapping[str, Any] | None) -> LabConfig:
    """`cfg` running another workload: a kind ("redis") or a whole `[workload]` table; None keeps it.

    A kind other than the config's own replaces its `[workload]` table (its custom fields would
    not apply); asking for "custom" needs the table itself."""
    return with_choices(cfg, workload=workload)


def with_choices(cfg: LabConfig, workload: str | Mapping[str, Any] | None = None,
                 memory_mib: int | None = None) -> LabConfig:
    """`cfg` with another workload (as `with_workload`) and/or backend.memory_mib; None keeps each.
    Both in one validation, so a redis workload with memory replaces an echo config without it."""
    new_workload = workload is not None and workload != cfg.workload.kind
    new_memory = memory_mib is not None and memory_mib != cfg.backend.memory_mib
    if not new_workload and not new_memory:
        return cfg
    raw = dict(cfg.source) if cfg.source else {}
    if not raw:
        from p4cf_kit.lab import config_to_dict_source  # late: lab imports this module
        raw = config_to_dict_source(cfg)
    if new_workload:
        raw["workload"] = {"kind": workload} if isinstance(workload, str) else dict(workload or {})
    if new_memory:
        backend = {k: v for k, v in dict(raw.get("backend") or {}).items() if k != "ballast_mib"}
        raw["backend"] = {**backend, "memory_mib": memory_mib}
    return parse_config(raw)
