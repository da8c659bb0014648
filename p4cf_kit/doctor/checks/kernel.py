"""Checks of privileges and kernel features: root, network namespaces, veth, AF_PACKET, TCP
repair, and the embedded switch's eBPF fast path.

The ones that create something (a netns, a veth pair) give it a kit name carrying the doctor's
pid and remove it before returning, whatever happens.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable

from p4cf_kit.doctor.checks.probes import output, run
from p4cf_kit.doctor.checks.result import CheckResult
from p4cf_kit.labels import NAME_PREFIX

TCP_REPAIR = getattr(socket, "TCP_REPAIR", 19)  # linux/tcp.h; CRIU sets it on every TCP socket it dumps
ETH_P_ALL = 0x0003


def check_root() -> CheckResult:
    """The kit drives Podman (rootful), CRIU and network namespaces: it needs root."""
    uid = os.geteuid()
    if uid == 0:
        return CheckResult("root", True, True, "running as root")
    return CheckResult("root", False, True, f"running as uid {uid}",
                       "run as root: sudo .venv/bin/p4cf doctor")


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    ip = shutil.which("ip")
    if ip is None:
        raise FileNotFoundError("`ip` not found: apt-get install iproute2")
    return run([ip, *args])


def _in_scratch_netns(name: str, required: bool, fix: str, ns: str,
                      use: Callable[[], CheckResult]) -> CheckResult:
    """Create namespace `ns`, run `use` (the check proper), and delete `ns` whatever happens."""
    added = _ip("netns", "add", ns)
    if added.returncode != 0:
        return CheckResult(name, False, required, f"`ip netns add {ns}`: {output(added)}", fix)
    try:
        return use()
    finally:
        _ip("netns", "delete", ns)


def check_netns() -> CheckResult:
    """Network namespaces can be made (one per host network of a lab)."""
    ns = f"{NAME_PREFIX}doctor-{os.getpid()}"
    fix = "run as root on a kernel with CONFIG_NET_NS; apt-get install iproute2"

    def use() -> CheckResult:
        lo = _ip("-n", ns, "link", "set", "lo", "up")
        if lo.returncode != 0:
            return CheckResult("netns", False, True, f"namespace {ns} unusable: {output(lo)}", fix)
        return CheckResult("netns", True, True, f"created and deleted {ns}")
    try:
        return _in_scratch_netns("netns", True, fix, ns, use)
    except (OSError, subprocess.SubprocessError) as exc:
        return CheckResult("netns", False, True, str(exc), fix)


def check_veth() -> CheckResult:
    """veth pairs can be made (they wire host networks to switch ports)."""
    a, b = f"{NAME_PREFIX}d{os.getpid()}a", f"{NAME_PREFIX}d{os.getpid()}b"  # <= 15 chars
    fix = "run as root on a kernel with CONFIG_VETH (modprobe veth)"
    try:
        added = _ip("link", "add", a, "type", "veth", "peer", "name", b)
        if added.returncode != 0:
            return CheckResult("veth", False, True, f"`ip link add {a} type veth`: {output(added)}", fix)
        _ip("link", "delete", a)  # deletes the peer too
    except (OSError, subprocess.SubprocessError) as exc:
        return CheckResult("veth", False, True, str(exc), fix)
    return CheckResult("veth", True, True, f"created and deleted {a}/{b}")


def check_af_packet() -> CheckResult:
    """AF_PACKET raw sockets open (the embedded switch's data plane uses them)."""
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.close()
    except (OSError, AttributeError) as exc:
        return CheckResult("af-packet", False, True, f"cannot open a raw packet socket: {exc}",
                           "run as root (CAP_NET_RAW) on a kernel with CONFIG_PACKET")
    return CheckResult("af-packet", True, True, "raw packet socket opens")


def check_tcp_repair() -> CheckResult:
    """TCP_REPAIR can be set on a socket: CRIU needs it to dump and restore connections."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 0)
    except OSError as exc:
        return CheckResult("tcp-repair", False, True, f"setsockopt(TCP_REPAIR): {exc}",
                           "run as root (CAP_NET_ADMIN); TCP repair mode is in every Linux >= 3.5")
    return CheckResult("tcp-repair", True, True, "setsockopt(TCP_REPAIR) works")


def check_ebpf_fastpath() -> CheckResult:
    """Optional: the embedded switch's kernel fast path loads here (its maps, the verifier's
    yes to its program, a tcx link on an interface). Without it the switch forwards every
    frame in user space: correct, but TCP runs at about half of kernel routing."""
    from p4cf_kit.errors import OffloadUnavailable
    from p4cf_kit.switch.embedded.ebpf.offload import KernelOffload
    ns = f"{NAME_PREFIX}doctor-bpf-{os.getpid()}"
    fix = "run as root on a kernel with CONFIG_BPF_SYSCALL and CONFIG_NET_CLS_BPF (or tcx, Linux >= 6.6)"

    def use() -> CheckResult:
        offload = KernelOffload({1: "lo"}, ns).start()
        how = "a tcx link" if offload.attach_kind == "tcx" else "a cls_bpf filter (no tcx before Linux 6.6)"
        offload.close()
        return CheckResult("ebpf-fastpath", True, False,
                           f"program verified and attached with {how} (the switch's default data path)")
    try:
        return _in_scratch_netns("ebpf-fastpath", False, fix, ns, use)
    except (OSError, OffloadUnavailable, subprocess.SubprocessError) as exc:
        return CheckResult("ebpf-fastpath", False, False, f"kernel fast path unavailable: {exc}", fix)
