"""`p4cf doctor --machine NAME`: is another machine of a lab ready, checked over SSH only.

Each check runs one command there (through the same `RemoteMachine` the lab uses) and says
how to fix what fails: reachable, Podman and its runtime, CRIU and `criu check`, pycriu,
kernel pieces (TCP repair needs CRIU; userfaultfd for lazy restore), tools (iproute2,
nftables, ethtool), the kit's images, the uplinks.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence

from p4cf_kit.checkpoint.criu import MIN_VERSION as MIN_CRIU
from p4cf_kit.config import MachineConfig
from p4cf_kit.doctor.checks.result import CheckResult
from p4cf_kit.errors import KitError
from p4cf_kit.machines.images import PUSHED_BY_DEFAULT
from p4cf_kit.machines.remote import RemoteMachine

MIN_PODMAN = (4, 3)
PYCRIU_PATHS = "/usr/local/lib/p4cf/python:/usr/lib/python3/dist-packages"


def _version(text: str) -> tuple[int, ...]:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(x) for x in m.groups() if x is not None) if m else ()


def _check(name: str, required: bool, body: Callable[[], tuple[bool, str, str]]) -> CheckResult:
    try:
        ok, detail, fix = body()
    except KitError as exc:
        return CheckResult(name, False, required, str(exc), "see the message")
    return CheckResult(name, ok, required, detail, "" if ok else fix)


def machine_checks(machine: RemoteMachine, mc: MachineConfig,
                   uplinks: Sequence[str] = ()) -> list[CheckResult]:
    """Every check of remote `machine`; stops after `reachable` fails (nothing else can run)."""
    m = machine

    def sh(script: str) -> subprocess.CompletedProcess[str]:
        return m.run(["sh", "-c", script], check=False)

    reach = _check("reachable", True, lambda: (m.run(["true"]).returncode == 0,
                                                f"ssh {m.ssh.target.where} with {m.ssh.target.identity}", ""))
    if not reach.ok:
        return [reach]

    def podman() -> tuple[bool, str, str]:
        p = m.podman("info", "--format", "{{.Version.Version}} {{.Host.OCIRuntime.Name}}", check=False)
        if p.returncode != 0:
            return False, (p.stderr or p.stdout).strip(), (
                f"start Podman's API service there (`systemctl enable --now podman.socket`) at "
                f"{m.url.socket}")
        version, runtime = (p.stdout.split() + ["", ""])[:2]
        ok = _version(version) >= MIN_PODMAN and runtime == "runc"
        return ok, f"Podman {version}, runtime {runtime}", (
            "install Podman >= 4.3 and runc, and set runtime = \"runc\" in [engine] of its containers.conf "
            "(checkpoint/restore needs runc)")

    def criu() -> tuple[bool, str, str]:
        p = sh("criu --version 2>&1 | head -1; criu check >/dev/null 2>&1 && echo CHECK-OK")
        version = _version(p.stdout)
        ok = version >= MIN_CRIU and "CHECK-OK" in p.stdout
        detail = f"CRIU {'.'.join(map(str, version)) or 'not found'}" + (
            ", `criu check` passes" if "CHECK-OK" in p.stdout else ", `criu check` fails")
        return ok, detail, "install CRIU >= 4.2 (the kit's scripts/setup-criu.sh builds it) and run `criu check` there"

    def pycriu() -> tuple[bool, str, str]:
        p = sh(f"PYTHONPATH={PYCRIU_PATHS} python3 -c 'import pycriu; print(pycriu.__file__)'")
        err = (p.stderr.strip().splitlines() or ["not found"])[-1]
        fix = ("install protobuf for Python there (apt-get install python3-protobuf)" if "google" in err
               else "install CRIU's Python module (pycriu; built with CRIU by scripts/setup-criu.sh, "
                    "or the distribution's python3-criu)")
        return p.returncode == 0, p.stdout.strip() or err, fix

    def kernel() -> tuple[bool, str, str]:
        p = sh("uname -r; [ -e /proc/sys/net/ipv4/tcp_repair ] || true; "
               "[ -e /proc/sys/vm/unprivileged_userfaultfd ] && echo UFFD; "
               "[ -d /proc/sys/net/netfilter ] || modprobe -n nf_tables >/dev/null 2>&1; echo done")
        lines = p.stdout.split()
        return bool(lines), f"kernel {lines[0] if lines else '?'}" + (
            ", userfaultfd" if "UFFD" in lines else ", no userfaultfd (no lazy restore)"), (
            "use a kernel with network namespaces, veth, nftables and userfaultfd")

    def tools() -> tuple[bool, str, str]:
        # tar and python3 (os.splice: >= 3.10): the ends of the images' transfer (migration/tar_stream.py)
        p = sh("for t in ip nft ethtool nsenter tar; do command -v $t >/dev/null || echo missing:$t; done; "
               "python3 -c 'import os; os.splice' 2>/dev/null || echo 'missing:python3>=3.10'")
        missing = [w.split(":", 1)[1] for w in p.stdout.split() if w.startswith("missing:")]
        return not missing, ("ip, nft, ethtool, nsenter, tar, python3 >= 3.10" if not missing
                             else f"missing: {', '.join(missing)}"), (
            "apt-get install iproute2 nftables ethtool util-linux tar python3 (3.10 or later)")

    def images() -> tuple[bool, str, str]:
        missing = [ref for ref in PUSHED_BY_DEFAULT
                   if m.podman("image", "exists", ref, check=False).returncode != 0]
        return not missing, "kit images present" if not missing else f"missing: {', '.join(missing)}", (
            f"p4cf images push {m.name}")

    def uplink() -> tuple[bool, str, str]:
        names = list(uplinks or mc.uplinks)
        if not names and mc.emulated:
            from p4cf_kit.machines import emulated
            rec = emulated.load(mc.name)
            names = list(rec.uplinks) if rec else []
        if not names:
            return False, "no uplink configured", f"name its NICs toward the switch: machines.{m.name}.uplinks"
        missing = [u for u in names if m.run(["ip", "link", "show", u], check=False).returncode != 0]
        return not missing, f"uplinks {', '.join(names)}" + (f"; missing: {', '.join(missing)}" if missing else ""), (
            f"fix machines.{m.name}.uplinks (see `ip link` there)")

    def switch() -> tuple[bool, str, str]:
        """Which of the kit's switches could run there (`[switch] machine`): optional."""
        from p4cf_kit.switch import elsewhere
        can = []
        for target in ("bmv2", "embedded"):
            try:
                elsewhere.require_program(target, m, mc)
                can.append(target)
            except KitError:
                pass
        return bool(can), f"can run the kit's switch: {', '.join(can)}" if can else "runs no switch of the kit's", (
            f"only for [switch] machine = \"{m.name}\": install BMv2 (simple_switch_grpc) there, or the kit "
            f"and name its Python with [machines.{m.name}] python")

    return [reach, _check("podman", True, podman), _check("criu", True, criu),
            _check("pycriu", True, pycriu), _check("kernel", True, kernel), _check("tools", True, tools),
            _check("images", True, images), _check("uplinks", True, uplink), _check("switch", False, switch)]
