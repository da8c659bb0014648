"""The kit's own switch (embedded or BMv2) on another machine of the lab: `[switch] machine = "b"`.

Why: on a testbed the software switch often runs on a server of its own, cabled to the others,
not on the machine that drives the experiment. Everything here reaches that machine the way the
kit reaches any other one, over SSH (`RemoteMachine.run`), never through this machine's files:

- its ports: a kit netns there (`<lab>s1-on-<machine>`, no addresses, no forwarding), a veth pair
  per host placed on that machine (one end enslaved to the host network's bridge there), and the
  NICs cabled to the other machines' uplinks moved into it with the port's MAC;
- its process: started there under `setsid nohup nsenter --net=...` (the pid is the switch's own),
  its log in `/run/p4cf/switch/` there, stopped by pid after its command line was checked;
- P4Runtime: served on a unix socket there, reached from here through an SSH forward of a local
  unix socket (a process of its own, so its life does not hang on the multiplexed connection's
  idle timeout): the session is encrypted and authenticated like every command the kit sends, and
  the controller code is the same as for a switch here (`unix:<state>/s1.grpc.sock`).

What runs there must be installed there: BMv2's `simple_switch_grpc` (its PATH, /opt/p4lang/bin,
or `[machines.b] simple_switch_grpc`), or for the embedded switch a Python with p4cf_kit
(`[machines.b] python`; an emulated machine shares this machine's files, so it uses this one's).
The pipeline comes over P4Runtime from here (p4c runs here), so that machine needs no compiler.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from p4cf_kit.config import HostConfig, LabConfig, MachineConfig
from p4cf_kit.errors import KitError, PrerequisiteError, SwitchError
from p4cf_kit.grpc_ready import wait_grpc_ready
from p4cf_kit.machines.machine import Machine
from p4cf_kit.switch import pids
from p4cf_kit.switch.state import LOG_FILE, SwitchState, clear_state, read_state, state_file, write_state
from p4cf_kit.topology.names import LabNames

RUN_DIR = "/run/p4cf/switch"       # on the switch's machine
FORWARD_LOG = "switch-forward.log"  # here, beside the lab's switch.log
OFFLOADS = "tx off tso off gso off gro off"
BMV2_DIRS = ("/opt/p4lang/bin", "/usr/local/bin")
EMBEDDED_MARKER = "p4cf_kit.switch"
BMV2_MARKER = "simple_switch_grpc"


def netns_name(names: LabNames, machine: str) -> str:
    """The switch's netns on `machine` (a name of its own, so it never passes for one made here)."""
    return f"{names.switch_netns}-on-{machine}"


def remote_paths(names: LabNames) -> tuple[str, str, str]:
    """(P4Runtime socket, log, state file) of the lab's switch on its machine."""
    base = f"{RUN_DIR}/{names.lab}"
    return f"{base}.grpc.sock", f"{base}.log", f"{base}.json"


def _marker(target: str) -> str:
    return BMV2_MARKER if target == "bmv2" else EMBEDDED_MARKER


# --- ports ----------------------------------------------------------------------------------------

def wire(cfg: LabConfig, names: LabNames, machine: Machine, cables: Mapping[str, str]) -> dict[int, str]:
    """Make the switch's ports on `machine` (one SSH call): its netns, a veth pair per host placed
    there, and each NIC of `cables` (host name -> that machine's NIC) moved in with the port's MAC.
    Returns port number -> interface, as the switch takes them."""
    ns = netns_name(names, machine.name)
    nsx = f"nsenter --net=/run/netns/{ns}"
    lines = ["set -e", f"ip netns add {ns}",
             f"{nsx} sh -c 'for f in all default; do echo 1 > /proc/sys/net/ipv6/conf/$f/disable_ipv6; done; "
             "echo 0 > /proc/sys/net/ipv4/ip_forward; ip link set lo up'"]
    ports: dict[int, str] = {}
    for h in cfg.hosts:
        if h.machine == machine.name:
            br, sw = names.bridge_port(h.port), names.switch_port(h.port)
            lines += [f"ip link add {br} type veth peer name {sw} address {h.switch_mac} netns {ns}",
                      f"echo 1 > /proc/sys/net/ipv6/conf/{br}/disable_ipv6",
                      f"ethtool -K {br} {OFFLOADS} >/dev/null 2>&1 || true",
                      f"{nsx} sh -c 'ip link set {sw} up; ethtool -K {sw} {OFFLOADS} >/dev/null 2>&1 || true'"]
            ports[h.port] = sw
        elif h.name in cables:
            nic = cables[h.name]
            lines += [f"[ -e /sys/class/net/{nic} ] || {{ echo 'no interface {nic} (switch port {h.port}, "
                      f"cabled to {h.name})' >&2; exit 3; }}",
                      f"ip link set {nic} down", f"ip link set {nic} address {h.switch_mac} netns {ns}",
                      f"{nsx} sh -c 'ip link set {nic} up; ethtool -K {nic} {OFFLOADS} >/dev/null 2>&1 || true'"]
            ports[h.port] = nic
    proc = machine.run(["sh", "-c", "\n".join(lines) + "\n"], check=False)
    if proc.returncode != 0:
        raise SwitchError(f"machine {machine.name!r}: could not make the switch's ports: "
                          f"{(proc.stderr or proc.stdout).strip()}")
    return ports


def attach_port(names: LabNames, host: HostConfig, bridge: str, machine: Machine) -> None:
    """Enslave the bridge end of `host`'s port to its network's bridge, on the switch's machine."""
    br = names.bridge_port(host.port)
    machine.run(["sh", "-c", f"echo 1 > /proc/sys/net/ipv6/conf/{bridge}/disable_ipv6 2>/dev/null || true\n"
                 f"ip link set {br} master {bridge} up\n"])


def ports_present(cfg: LabConfig, names: LabNames, machine: Machine, cables: Mapping[str, str]) -> dict[int, str]:
    """The ports a bring-up made (they outlive the switch process); KitError naming a missing one."""
    ns = netns_name(names, machine.name)
    out = machine.run(["ip", "-n", ns, "-o", "link", "show"], check=False)
    if out.returncode != 0:
        raise KitError(f"lab {cfg.name!r}: the switch's network namespace {ns} on machine {machine.name!r} "
                       "is gone, so its ports are too; rebuild the lab: `p4cf down` then `p4cf up`")
    have = {line.split(":")[1].strip().split("@")[0] for line in out.stdout.splitlines() if ":" in line}
    ports: dict[int, str] = {}
    for h in cfg.hosts:
        iface = names.switch_port(h.port) if h.machine == machine.name else cables.get(h.name, "")
        if iface not in have:
            raise KitError(f"lab {cfg.name!r}: switch port {h.port} ({iface}) on machine {machine.name!r} is "
                           "gone; rebuild the lab: `p4cf down` then `p4cf up`")
        ports[h.port] = iface
    return ports


def unwire(names: LabNames, machine: Machine) -> list[str]:
    """Hand the cables back to the machine's own netns, delete the switch's netns there (its veths
    go with it) and any port end left behind; what was removed, as "machine:name"."""
    ns = netns_name(names, machine.name)
    script = f"""
if [ -e /run/netns/{ns} ]; then
  for i in $(ip -n {ns} -o link show | awk -F': ' '{{print $2}}' | cut -d@ -f1); do
    case "$i" in lo|{names.prefix}*sw) ;; *) ip -n {ns} link set "$i" down netns $$ && echo "cable:$i" ;; esac
  done
  ip netns del {ns} && echo "netns:{ns}"
fi
for i in $(ip -o link show | awk -F': ' '{{print $2}}' | cut -d@ -f1 | grep -E '^{names.prefix}[0-9]+br$'); do
  ip link del "$i" && echo "iface:$i"
done
true
"""
    out = machine.run(["sh", "-c", script], check=False).stdout
    return [f"{machine.name}:{w.split(':', 1)[1]}" for w in out.split()]


# --- the process ----------------------------------------------------------------------------------

def _python(mc: MachineConfig) -> str:
    if mc.python:
        return mc.python
    return sys.executable if mc.emulated else "python3"


def _bmv2(machine: Machine, mc: MachineConfig) -> str:
    """simple_switch_grpc on `machine`: the config's, else its PATH's or a p4lang install's."""
    if mc.simple_switch_grpc:
        return mc.simple_switch_grpc
    look = " || ".join([f"command -v {BMV2_MARKER}", *(f"ls {d}/{BMV2_MARKER}" for d in BMV2_DIRS)])
    found = machine.run(["sh", "-c", f"{look} 2>/dev/null"], check=False).stdout.strip().splitlines()
    if not found:
        raise PrerequisiteError(f"machine {machine.name!r} has no {BMV2_MARKER} (not on its PATH, not in "
                                f"{' or '.join(BMV2_DIRS)}); install BMv2 there, or name it with "
                                f"[machines.{machine.name}] simple_switch_grpc = \"/path/to/{BMV2_MARKER}\"")
    return found[0]


def program(target: str, machine: Machine, mc: MachineConfig, ports: Mapping[int, str], device_id: int,
            datapath: str, names: LabNames) -> list[str]:
    """The switch's argv on its machine (inside its netns: nsenter execs, so the pid is the switch's)."""
    sock, _log, state = remote_paths(names)
    if target == "bmv2":
        from p4cf_kit.switch.bmv2.command import Bmv2Options, switch_args
        if datapath != "auto":
            raise SwitchError(f"datapath {datapath!r} is an embedded-switch option; BMv2 has its own")
        argv = [_bmv2(machine, mc), *switch_args(Bmv2Options(ports=dict(ports), grpc_addr=f"unix:{sock}",
                                                             device_id=device_id))]
    else:
        argv = [_python(mc), "-m", "p4cf_kit.switch.embedded", "--device-id", str(device_id),
                "--grpc-server-addr", f"unix:{sock}", "--log-console", "--datapath", datapath,
                "--state-file", state]
        for port, iface in sorted(ports.items()):
            argv += ["-i", f"{port}@{iface}"]
    return ["nsenter", f"--net=/run/netns/{netns_name(names, machine.name)}", *argv]


def require_program(target: str, machine: Machine, mc: MachineConfig) -> None:
    """The switch program exists on `machine` (checked before anything is made)."""
    if target == "bmv2":
        _bmv2(machine, mc)
        return
    py = _python(mc)
    probe = machine.run([py, "-c", "import p4cf_kit.switch.embedded"], check=False)
    if probe.returncode != 0:
        why = probe.stderr.strip()[-200:]
        raise PrerequisiteError(f"machine {machine.name!r}: {py} cannot import p4cf_kit ({why}); "
                                "install the kit there (`pip install` its checkout) and name that Python with "
                                f"[machines.{machine.name}] python = \"/path/to/python\"")


def _forward(machine: Machine, local: Path, remote: str, log: Path) -> subprocess.Popen[bytes]:
    """An SSH process forwarding unix socket `local` here to `remote` on `machine`."""
    from p4cf_kit.machines.remote import RemoteMachine
    if not isinstance(machine, RemoteMachine):
        raise SwitchError(f"machine {machine.name!r} is not reached over SSH")
    ssh = machine.ssh
    base, args = ssh.base_args(), []
    mux = ("ControlMaster=", "ControlPath=", "ControlPersist=")
    for i, a in enumerate(base):  # a connection of its own, never the multiplexed one
        if a.startswith(mux) or (a == "-o" and i + 1 < len(base) and base[i + 1].startswith(mux)):
            continue
        args.append(a)
    local.unlink(missing_ok=True)
    cmd = [*args, "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "ExitOnForwardFailure=yes",
           "-o", "StreamLocalBindUnlink=yes", "-N", "-L", f"{local}:{remote}",
           f"{ssh.target.user}@{ssh.target.host}"]
    return pids.spawn(cmd, log)


def _remote_alive(machine: Machine, pid: int, marker: str) -> bool:
    probe = machine.run(["sh", "-c", f"tr '\\0' ' ' < /proc/{pid}/cmdline 2>/dev/null"], check=False)
    return marker in probe.stdout


def _remote_tail(machine: Machine, log: str, lines: int = 15) -> str:
    try:
        return machine.run(["tail", "-n", str(lines), log], check=False).stdout.strip() or "(empty log)"
    except KitError:
        return "(log unreadable)"


def start(cfg: LabConfig, names: LabNames, machine: Machine, ports: Mapping[int, str],
          timeout: float = 30.0) -> SwitchState:
    """Start the lab's switch on `machine` with `ports`; return once P4Runtime answers here through
    the forward. Nothing is left running on failure."""
    sw = cfg.switch
    mc = cfg.machines[machine.name]
    sock, log, remote_state = remote_paths(names)
    argv = program(sw.target, machine, mc, ports, sw.device_id, sw.datapath, names)
    names.state.mkdir(parents=True, exist_ok=True)
    path = state_file(names.state)
    if (old := read_state(path)) is not None and old.machine == machine.name and old.pid \
            and _remote_alive(machine, old.pid, _marker(old.target)):
        raise SwitchError(f"a switch (pid {old.pid} on {machine.name!r}) already runs for this lab; `p4cf down` first")
    clear_state(path)
    launch = (f"mkdir -p {RUN_DIR} && rm -f {sock} {remote_state} && cd / && "
              f"echo \"--- $(date -Is) {shlex.join(argv)}\" >> {log} && "
              f"{{ setsid nohup {shlex.join(argv)} >> {log} 2>&1 < /dev/null & echo $!; }}")
    out = machine.run(["sh", "-c", launch]).stdout.split()
    if not out or not out[-1].isdigit():
        raise SwitchError(f"machine {machine.name!r}: the switch did not start: {' '.join(out)}")
    pid = int(out[-1])
    local = Path(names.default_grpc_addr()[len("unix:"):])
    fwd = _forward(machine, local, sock, names.state / FORWARD_LOG)
    marker = _marker(sw.target)
    try:
        wait_grpc_ready(f"unix:{local}", timeout, alive=lambda: fwd.poll() is None)
        data_path = "BMv2 (simple_switch_grpc)" if sw.target == "bmv2" else "embedded"
        if sw.target != "bmv2":
            got = machine.run(["cat", remote_state], check=False).stdout
            try:
                data_path = json.loads(got).get("data_path", data_path)
            except ValueError:
                pass
    except SwitchError as exc:
        why = str(exc)
        if fwd.poll() is not None:
            why += f"; the SSH forward ended: {pids.log_tail(names.state / FORWARD_LOG, 5)}"
        tail = _remote_tail(machine, log)
        _stop_remote(machine, pid, marker)
        pids.stop(fwd.pid, str(local))
        pids.reap(fwd.pid)
        raise SwitchError(f"the switch on machine {machine.name!r} did not come up: {why}; its log "
                          f"({machine.name}:{log}):\n{tail}") from None
    state = SwitchState(target=sw.target, pid=pid, grpc_addr=f"unix:{local}",
                        data_path=f"{data_path} on {machine.name}", machine=machine.name,
                        forward_pid=fwd.pid)
    write_state(path, state)
    (names.state / LOG_FILE).write_text(f"the switch runs on machine {machine.name!r}; its log is "
                                        f"{machine.name}:{log}\n")
    return state


def _stop_remote(machine: Machine, pid: int, marker: str, grace: float = 3.0) -> bool:
    """SIGTERM the switch on `machine` if `pid` still runs it, SIGKILL after `grace` s."""
    script = f"""
ours() {{ tr '\\0' ' ' < /proc/{pid}/cmdline 2>/dev/null | grep -q {shlex.quote(marker)}; }}
ours || exit 1
kill {pid} 2>/dev/null
for i in $(seq {int(grace * 20)}); do ours || exit 0; sleep 0.05; done
kill -9 {pid} 2>/dev/null
for i in $(seq 100); do ours || exit 0; sleep 0.05; done
exit 0
"""
    return machine.run(["sh", "-c", script], check=False).returncode == 0


def machine_of_state(state: Path) -> tuple[Machine, LabConfig] | None:
    """The switch's machine for the lab whose state folder is `state` (from the config it was
    brought up with); None when that config is gone or names no such machine."""
    from p4cf_kit.machines.registry import open_machine
    from p4cf_kit.topology.cleanup import saved_config
    cfg = saved_config(state.name)
    if cfg is None or not cfg.switch.elsewhere:
        return None
    try:
        return open_machine(cfg.machines[cfg.switch.machine]), cfg
    except KitError:
        return None


def running(state: Path, found: SwitchState) -> bool:
    """True while the switch `found` describes runs on its machine and its forward here."""
    local = found.grpc_addr[len("unix:"):]
    if found.forward_pid is None or not pids.runs(found.forward_pid, local):
        return False
    opened = machine_of_state(state)
    if opened is None or found.pid is None:
        return False
    try:
        return _remote_alive(opened[0], found.pid, _marker(found.target))
    except KitError:
        return False


def stop(state: Path, found: SwitchState) -> bool:
    """Stop the switch on its machine and the forward here; True when the switch was running."""
    local = found.grpc_addr[len("unix:"):]
    was = False
    opened = machine_of_state(state)
    if opened is not None and found.pid is not None:
        try:
            was = _stop_remote(opened[0], found.pid, _marker(found.target))
        except KitError as exc:
            print(f"p4cf: the switch on machine {found.machine!r} could not be stopped: {exc}",
                  file=sys.stderr, flush=True)
    pids.stop(found.forward_pid, local)
    if found.forward_pid is not None:
        pids.reap(found.forward_pid)
    Path(local).unlink(missing_ok=True)
    return was



def ensure_forward(state: Path, machine: Machine) -> bool:
    """Bring back the SSH forward of the switch's P4Runtime socket if it ended (sshd restarted, the
    link dropped a while) while the switch still runs there; True when it was restarted. A long
    unattended run then loses one P4Runtime session, not the lab."""
    path = state_file(state)
    found = read_state(path)
    if found is None or found.machine != machine.name:
        return False
    local = Path(found.grpc_addr[len("unix:"):])
    if pids.runs(found.forward_pid, str(local)):
        return False
    if found.forward_pid is not None:
        pids.reap(found.forward_pid)
    sock, _log, _state = remote_paths(LabNames(state.name))
    fwd = _forward(machine, local, sock, state / FORWARD_LOG)
    write_state(path, SwitchState(**{**found.__dict__, "forward_pid": fwd.pid}))
    print(f"p4cf: the SSH forward to the switch on machine {machine.name!r} had ended; restarted it "
          f"(pid {fwd.pid})", file=sys.stderr, flush=True)
    return True
