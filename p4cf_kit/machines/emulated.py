"""An emulated second machine on this one: a stand-in the kit reaches only as it reaches a real one.

Why: labs that span machines must be tested where there is one machine. The stand-in is a
machine in every way the kit can observe: its own network namespace (`p4cf-m-NAME`), its own
sshd listening only inside it, its own Podman (storage, run root, tmp dir, network configs,
containers.conf) served on a unix socket that only SSH reaches, a management link to this
machine (rate-limited with tbf: this kernel has no netem, so no delay), and uplinks (veths,
the cables) toward the switch. The kit then talks to it through `RemoteMachine`, over SSH and
Podman's REST API, never through the shared file system or `ip netns exec`.

Layout (state folder `machines/NAME/`): keys, sshd_config, known_hosts, containers.conf,
Podman storage, `machine.json` (the record `p4cf down` and configs use). Run-time files live
under `/run/p4cf/machines/NAME/`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from p4cf_kit.errors import ConfigError, KitError, PrerequisiteError
from p4cf_kit.labels import NAME_PREFIX
from p4cf_kit.netns import run
from p4cf_kit.paths import state_dir, write_if_changed
from p4cf_kit.podman.conf import render_containers_conf
from p4cf_kit.switch.pids import alive, cmdline

NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,5}$")
SSH_PORT = 22
MGMT_BASE = "10.250"  # 10.250.K.0/30 per machine, K = 1..250
INSIDE_MGMT = "eth0"
RECORD = "machine.json"
MIN_DISK_MIB, MAX_DISK_MIB = 128, 65536


@dataclass
class EmulatedMachine:
    """What `emulate` made: addresses, links and processes of one stand-in machine."""

    name: str
    netns: str
    mgmt_index: int
    local_addr: str
    machine_addr: str
    ssh_port: int
    identity: str
    known_hosts: str
    podman_socket: str
    uplinks: dict[str, str] = field(default_factory=dict)  # uplink inside -> cable end here
    link_gbit: float | None = None
    disk_mib: int | None = None    # its Podman storage on a tmpfs this big (a small disk); None: unbounded
    sshd_pid: int = 0
    podman_pid: int = 0

    @property
    def podman_url(self) -> str:
        return f"ssh://root@{self.machine_addr}:{self.ssh_port}{self.podman_socket}"

    def config_toml(self) -> str:
        """The `[machines.NAME]` entry a lab config uses for this machine."""
        ups = ", ".join(f'"{u}"' for u in self.uplinks)
        return (f"[machines.{self.name}]\n"
                f'podman = "{self.podman_url}"\n'
                f'identity = "{self.identity}"\n'
                f'known_hosts = "{self.known_hosts}"\n'
                f"uplinks = [{ups}]\n")


def machine_dir(name: str) -> Path:
    return state_dir() / "machines" / name


def run_dir(name: str) -> Path:
    return Path("/run/p4cf/machines") / name


def netns_name(name: str) -> str:
    return f"{NAME_PREFIX}m-{name}"


def mgmt_iface(name: str) -> str:
    """This machine's end of the management link (15 characters at most)."""
    return f"p4cfm-{name}-l"


def cable_iface(name: str, index: int) -> str:
    """This machine's end of uplink cable `index` (the switch side of the cable)."""
    return f"p4cfm-{name}-{index}"


def check_name(name: str) -> None:
    if not NAME_RE.match(name) or name == "local":
        raise ConfigError(f"machine name {name!r}: use 1-6 lowercase letters/digits starting with a "
                          "letter (not 'local'); it becomes part of interface names")


def load(name: str) -> EmulatedMachine | None:
    """The record of emulated machine `name`, or None when there is none."""
    path = machine_dir(name) / RECORD
    if not path.is_file():
        return None
    return EmulatedMachine(**json.loads(path.read_text()))


def emulated_names() -> list[str]:
    """Every emulated machine with a record or a namespace on this machine."""
    found: set[str] = set()
    base = state_dir() / "machines"
    if base.is_dir():
        found.update(p.name for p in base.iterdir() if (p / RECORD).is_file())
    netns = Path("/run/netns")
    if netns.is_dir():
        found.update(p.name[len(netns_name("")):] for p in netns.iterdir()
                     if p.name.startswith(netns_name("")))
    return sorted(found)


def _save(rec: EmulatedMachine) -> None:
    write_if_changed(machine_dir(rec.name) / RECORD, json.dumps(asdict(rec), indent=2) + "\n")


def _free_index() -> int:
    used = {rec.mgmt_index for n in emulated_names() if (rec := load(n)) is not None}
    for k in range(1, 251):
        if k not in used:
            return k
    raise KitError("no free management subnet left for another emulated machine (250 in use)")


def _require_tools() -> None:
    for tool, package in (("/usr/sbin/sshd", "openssh-server"), ("ssh-keygen", "openssh-client"),
                          ("ssh", "openssh-client"), ("tc", "iproute2"), ("nsenter", "util-linux")):
        if not (Path(tool).exists() if tool.startswith("/") else shutil.which(tool)):
            raise PrerequisiteError(f"emulating a machine needs {tool}: apt-get install {package} "
                                    "(the sshd is started only inside the emulated machine's namespace)")


def _keygen(path: Path, comment: str) -> None:
    if not path.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def shape(iface: str, gbit: float | None, netns: str | None = None) -> None:
    """Rate-limit `iface`'s egress with tbf (no delay: this kernel has no netem), or unshape it."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    run([*prefix, "tc", "qdisc", "del", "dev", iface, "root"], check=False)
    if gbit is None:
        return
    rate_bytes = gbit * 1e9 / 8
    # The bucket: what may leave above the rate at once, which a real link never allows. tc-tbf(8)'s
    # "rate / HZ" dates from jiffy timers; tbf now waits on a high-resolution timer, and measured
    # here (2-core VM, 300 MB) 128 KiB already gives 94-96 % of 1 and 10 Gbit/s while 64 KiB caps
    # 10 Gbit/s at 60 % (a 64 KiB GSO frame no longer fits and is cut up). The old bucket of 10 ms
    # at the rate let 12.5 MB of a 13 MB checkpoint through a "10 Gbit/s" link unshaped.
    burst = max(int(rate_bytes * 100e-6), 128 << 10)
    run([*prefix, "tc", "qdisc", "add", "dev", iface, "root", "tbf", "rate", f"{gbit}gbit",
         "burst", str(burst), "latency", "20ms"])


def _sshd_config(name: str, addr: str, port: int) -> str:
    d = machine_dir(name)
    return (
        "# Written by P4ContainerFlow Kit for emulated machine " + name + "\n"
        f"ListenAddress {addr}:{port}\n"
        f"HostKey {d / 'ssh_host_ed25519_key'}\n"
        f"PidFile {run_dir(name) / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "X11Forwarding no\n"
        "AllowStreamLocalForwarding yes\n"
        "MaxSessions 64\n"
        "ClientAliveInterval 5\n"     # a session whose client vanished ends within 15 s
        "ClientAliveCountMax 3\n"
        "MaxStartups 64:30:128\n"
        # A login's own `podman` sees the machine's storage and settings, as on a real server
        # whose CLI and socket service share the system's (topology/hosts.create_landing).
        f"SetEnv CONTAINERS_CONF={d / 'containers.conf'} CONTAINERS_STORAGE_CONF={d / 'storage.conf'}\n"
    )


def _storage_conf(name: str) -> str:
    """The machine's own storage.conf: its image and container store apart from this machine's."""
    return ("# Written by P4ContainerFlow Kit for emulated machine " + name + "\n[storage]\n"
            f'graphroot = "{machine_dir(name) / "storage"}"\nrunroot = "{run_dir(name) / "runroot"}"\n')


def _containers_conf(name: str) -> str:
    """The machine's own containers.conf: the kit's settings, and every path Podman would
    otherwise share with this machine's Podman moved into the machine's own folders."""
    r, d = run_dir(name), machine_dir(name)
    return render_containers_conf(
        engine={"tmp_dir": str(r / "libpod"), "volume_path": str(d / "volumes"),
                "static_dir": str(d / "storage" / "libpod")},
        network={"network_config_dir": str(d / "networks")})


def _start_podman(rec: EmulatedMachine) -> int:
    """Podman's API service inside the namespace (nsenter --net, not `ip netns exec`, which
    remounts /sys and makes runc miss the cgroup mounts)."""
    d, r = machine_dir(rec.name), run_dir(rec.name)
    conf = write_if_changed(d / "containers.conf", _containers_conf(rec.name))
    storage = write_if_changed(d / "storage.conf", _storage_conf(rec.name))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTAINERS_")}
    env["CONTAINERS_CONF"] = str(conf)
    env["CONTAINERS_STORAGE_CONF"] = str(storage)
    log = open(d / "podman-service.log", "ab")
    proc = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{rec.netns}", shutil.which("podman") or "podman",
         "--root", str(d / "storage"), "--runroot", str(r / "runroot"),
         "system", "service", "--time=0", f"unix://{rec.podman_socket}"],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 15
    while not Path(rec.podman_socket).exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise KitError(f"emulated machine {rec.name!r}: its Podman service did not start; "
                           f"see {d / 'podman-service.log'}")
        time.sleep(0.05)
    return proc.pid


def _start_sshd(rec: EmulatedMachine) -> int:
    d, r = machine_dir(rec.name), run_dir(rec.name)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    conf = write_if_changed(d / "sshd_config", _sshd_config(rec.name, rec.machine_addr, rec.ssh_port))
    pidfile = r / "sshd.pid"
    pidfile.unlink(missing_ok=True)
    run(["ip", "netns", "exec", rec.netns, "/usr/sbin/sshd", "-f", str(conf),
         "-E", str(d / "sshd.log")])
    deadline = time.monotonic() + 10
    while True:   # sshd creates its pid file, then writes it: an empty one is not read yet
        words = pidfile.read_text().split() if pidfile.exists() else []
        if words and words[0].isdigit():
            return int(words[0])
        if time.monotonic() > deadline:
            raise KitError(f"emulated machine {rec.name!r}: sshd did not start; see {d / 'sshd.log'}")
        time.sleep(0.05)


def emulate(name: str, link_gbit: float | None = None, uplinks: int = 2,
            disk_mib: int | None = None) -> EmulatedMachine:
    """Create emulated machine `name` (or return it, reshaped, when it already runs).
    `disk_mib`: the machine's disk (its Podman storage, where images and checkpoints land) is
    a tmpfs of this size, so a full disk can be tried the way it happens on a server."""
    check_name(name)
    if link_gbit is not None and not 0.001 <= link_gbit <= 400:
        raise ConfigError(f"--link-gbit {link_gbit}: use a rate between 0.001 and 400 Gbit/s")
    if not 1 <= uplinks <= 8:
        raise ConfigError(f"--uplinks {uplinks}: use 1..8")
    if disk_mib is not None and not MIN_DISK_MIB <= disk_mib <= MAX_DISK_MIB:
        raise ConfigError(f"--disk-mib {disk_mib}: use {MIN_DISK_MIB}..{MAX_DISK_MIB} (the kit's images "
                          f"alone take about {MIN_DISK_MIB // 2} MiB there)")
    existing = load(name)
    if existing is not None and alive(existing.sshd_pid) and alive(existing.podman_pid):
        if existing.disk_mib != disk_mib:
            raise ConfigError(f"emulated machine {name!r} runs with "
                              f"{f'a {existing.disk_mib} MiB disk' if existing.disk_mib else 'an unbounded disk'};"
                              f" a disk is not resized: `p4cf machine rm {name}` first")
        if existing.link_gbit != link_gbit:
            shape(mgmt_iface(name), link_gbit)
            shape(INSIDE_MGMT, link_gbit, netns=existing.netns)
            existing.link_gbit = link_gbit
            _save(existing)
        return existing
    remove(name)  # a half-made or crashed one
    _require_tools()
    d, r = machine_dir(name), run_dir(name)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    r.mkdir(parents=True, exist_ok=True)
    k = _free_index()
    rec = EmulatedMachine(
        name=name, netns=netns_name(name), mgmt_index=k,
        local_addr=f"{MGMT_BASE}.{k}.1", machine_addr=f"{MGMT_BASE}.{k}.2", ssh_port=SSH_PORT,
        identity=str(d / "id_ed25519"), known_hosts=str(d / "known_hosts"),
        podman_socket=str(r / "podman.sock"), link_gbit=link_gbit, disk_mib=disk_mib)
    try:
        if disk_mib is not None:
            (d / "storage").mkdir(exist_ok=True)
            run(["mount", "-t", "tmpfs", "-o", f"size={disk_mib}m,mode=0700", f"{NAME_PREFIX}disk-{name}",
                 str(d / "storage")])
        _keygen(d / "id_ed25519", f"p4cf-controller@{name}")
        _keygen(d / "ssh_host_ed25519_key", f"p4cf-host@{name}")
        shutil.copyfile(d / "id_ed25519.pub", d / "authorized_keys")
        host_key = (d / "ssh_host_ed25519_key.pub").read_text().split()
        (d / "known_hosts").write_text(f"{rec.machine_addr} {host_key[0]} {host_key[1]}\n")
        run(["ip", "netns", "add", rec.netns])
        ns = ["ip", "netns", "exec", rec.netns]
        run([*ns, "sh", "-c", "ip link set lo up; "
             "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; "
             "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"])
        run(["ip", "link", "add", mgmt_iface(name), "type", "veth", "peer", "name", INSIDE_MGMT,
             "netns", rec.netns])
        run(["ip", "addr", "add", f"{rec.local_addr}/30", "dev", mgmt_iface(name)])
        run(["ip", "link", "set", mgmt_iface(name), "up"])
        run([*ns, "ip", "addr", "add", f"{rec.machine_addr}/30", "dev", INSIDE_MGMT])
        run([*ns, "ip", "link", "set", INSIDE_MGMT, "up"])
        shape(mgmt_iface(name), link_gbit)
        shape(INSIDE_MGMT, link_gbit, netns=rec.netns)
        for i in range(uplinks):
            inside = f"up{i}"
            run(["ip", "link", "add", cable_iface(name, i), "type", "veth", "peer", "name", inside,
                 "netns", rec.netns])
            run([*ns, "ip", "link", "set", inside, "up"])
            rec.uplinks[inside] = cable_iface(name, i)
        rec.sshd_pid = _start_sshd(rec)
        rec.podman_pid = _start_podman(rec)
        _save(rec)
    except BaseException:
        _save(rec)
        remove(name)
        raise
    return rec


def _stop(pid: int, marker: str, timeout: float = 10) -> None:
    """SIGTERM `pid` if its command line still names `marker`, then wait (SIGKILL at the end)."""
    if not pid or not alive(pid) or marker not in cmdline(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def _unmount_storage(name: str) -> None:
    """Unmount what the machine's Podman left mounted under its storage (overlay layers, shm)."""
    storage = str(machine_dir(name) / "storage")
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if line.split()[4].startswith(storage + "/") or line.split()[4] == storage]  # its disk last
    for mount in sorted(mounts, key=len, reverse=True):
        run(["umount", "-l", mount], check=False)


def remove(name: str) -> list[str]:
    """Remove emulated machine `name`: its containers, Podman service, sshd, links, namespace
    and files. Idempotent; works on a half-made one. Returns what it removed."""
    check_name(name)
    removed: list[str] = []
    _close_connections(name)   # first, while the link still carries the goodbye to its sshd
    rec = load(name)
    if rec is not None:
        _stop(rec.podman_pid, "system service")
        _stop(rec.sshd_pid, "sshd")
        sock = Path(rec.podman_socket)
        sock.unlink(missing_ok=True)
    _remove_containers(name)
    ns = netns_name(name)
    if Path(f"/run/netns/{ns}").exists():
        _stop_leftover_processes(ns)
        run(["ip", "netns", "del", ns], check=False)
        removed.append(f"netns {ns}")
    for iface in [mgmt_iface(name)] + [cable_iface(name, i) for i in range(8)]:
        if Path(f"/sys/class/net/{iface}").exists():
            run(["ip", "link", "del", iface], check=False)
            removed.append(iface)
    _unmount_storage(name)
    for path in (machine_dir(name), run_dir(name)):
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def _stop_leftover_processes(netns: str) -> None:
    """Stop, by pid, what still runs in the machine's own namespace (sshd sessions whose client
    went away, a conmon): nothing else lives there, and a deleted namespace would hide them."""
    pids = [int(p) for p in run(["ip", "netns", "pids", netns], check=False).stdout.split() if p.isdigit()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def _close_connections(name: str) -> None:
    """End the SSH masters to this machine (ssh -O exit) and drop their sockets."""
    ctl_dir = Path("/run/p4cf/ssh")
    if not ctl_dir.is_dir():
        return
    for ctl in ctl_dir.glob(f"{name}-*.ctl"):
        subprocess.run(["ssh", "-o", f"ControlPath={ctl}", "-O", "exit", "p4cf-emulated"],
                       capture_output=True, timeout=10)
        ctl.unlink(missing_ok=True)
    for sock in ctl_dir.glob(f"{name}-*.podman.sock"):
        sock.unlink(missing_ok=True)


def _remove_containers(name: str) -> None:
    """Stop the conmon/runc children the machine's Podman left (they outlive its service):
    `podman rm` against the machine's own storage, run here since its service is gone."""
    d, r = machine_dir(name), run_dir(name)
    if not (d / "storage").exists():
        return
    conf = d / "containers.conf"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTAINERS_")}
    if conf.exists():
        env["CONTAINERS_CONF"] = str(conf)
    base = ["nsenter", f"--net=/run/netns/{netns_name(name)}"] if Path(
        f"/run/netns/{netns_name(name)}").exists() else []
    podman_cmd = [*base, shutil.which("podman") or "podman", "--root", str(d / "storage"),
                  "--runroot", str(r / "runroot")]
    for args in (["pod", "rm", "-a", "-f", "-t", "0"], ["rm", "-a", "-f", "-t", "0"],
                 ["network", "prune", "-f"]):
        subprocess.run([*podman_cmd, *args], env=env, capture_output=True, timeout=120)
