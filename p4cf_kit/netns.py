"""Host commands (`ip`, `nft`, `ethtool`, ...), also inside a network namespace; kit-owned
namespaces and veth pairs: creation, cleanup by prefix.

Why one runner: wiring, isolation, the tests and the benchmarks shell out to iproute2 and
nftables, often inside a namespace (the images have no tools, so pod namespaces are
configured from outside with nsenter); every failure then has one shape, HostToolError
naming the command with its stderr.

Everything made here carries the kit's name prefix (`p4cf-`), so cleanup can find it by name
and never touches anything else. Interface names are limited to 15 characters by Linux.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from p4cf_kit.errors import HostToolError, PrerequisiteError
from p4cf_kit.labels import NAME_PREFIX

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def _check_name(name: str) -> None:
    if not name.startswith(NAME_PREFIX):
        raise ValueError(f"{name!r}: kit namespaces and interfaces must start with {NAME_PREFIX!r}")


def tool(name: str) -> str:
    """The path of host tool `name`; PrerequisiteError with the fix when it is not installed."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        raise PrerequisiteError(f"`{name}` is not installed: run `make setup` "
                                "(apt-get install iproute2 nftables ethtool util-linux)")
    return path


def run(args: Sequence[str], check: bool = True, input: str | None = None, timeout: float | None = 30,
        env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a host command; raise HostToolError naming the command when it fails and `check`."""
    cmd = [tool(args[0]), *args[1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise HostToolError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): "
                            f"{(proc.stderr or proc.stdout).strip()}", cmd, proc.stderr)
    return proc


def netns_path(name: str) -> str:
    """Path of a named netns (`ip netns add` makes it under /run/netns)."""
    return f"/run/netns/{name}"


def _enter(netns: str, argv: Sequence[str]) -> list[str]:
    """`argv` under nsenter into `netns`: a namespace's name, or a path (/proc/PID/ns/net, a bind mount)."""
    path = netns if "/" in netns else netns_path(netns)
    return [tool("nsenter"), f"--net={path}", tool(argv[0]), *argv[1:]]


def run_in(netns: str, argv: Sequence[str], check: bool = True, input: str | None = None,
           timeout: float | None = 30, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a host command inside the network namespace `netns` (a name or a path) and wait for it."""
    return run(_enter(netns, argv), check=check, input=input, timeout=timeout, env=env)


def popen_in(netns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start a command inside the network namespace `netns` (the caller stops it by its pid)."""
    return subprocess.Popen(_enter(netns, argv), **kwargs)


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS` (inside the named `netns` when given); HostToolError carries stderr."""
    return run(["ip", *(["-n", netns] if netns else []), *args], check=check)


def list_netns() -> list[str]:
    """Names of all network namespaces (`ip netns list`)."""
    out = ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def create_netns(name: str) -> None:
    """Create namespace `name` with loopback up, IPv6 off (no autoconf chatter), forwarding off."""
    _check_name(name)
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)
    run_in(name, ["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                  "net.ipv6.conf.default.disable_ipv6=1"], check=False)


def delete_netns(name: str) -> None:
    """Delete namespace `name` (its veth ends go with it, and so do their peers)."""
    _check_name(name)
    ip("netns", "del", name, check=False)


def create_veth(name: str, peer: str, netns: str | None = None, peer_netns: str | None = None,
                mtu: int | None = None) -> None:
    """Create veth `name`<->`peer`, move each end to its namespace, bring both up."""
    _check_name(name)
    _check_name(peer)
    args = ["link", "add", name]
    if netns:
        args += ["netns", netns]
    args += ["type", "veth", "peer", "name", peer]
    if peer_netns:
        args += ["netns", peer_netns]
    ip(*args)
    for ifname, ns in ((name, netns), (peer, peer_netns)):
        if mtu:
            ip("link", "set", ifname, "mtu", str(mtu), netns=ns)
        ip("link", "set", ifname, "up", netns=ns)


def cleanup(prefix: str = NAME_PREFIX) -> None:
    """Delete every namespace and root-namespace interface whose name starts with `prefix`."""
    if not prefix.startswith(NAME_PREFIX):
        raise ValueError(f"cleanup prefix must start with {NAME_PREFIX!r}")
    for name in list_netns():
        if name.startswith(prefix):
            ip("netns", "del", name, check=False)
    for line in ip("-o", "link", "show").stdout.splitlines():
        ifname = line.split(":")[1].strip().split("@")[0]
        if ifname.startswith(prefix):
            ip("link", "del", ifname, check=False)


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def call_in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """Call `fn` in a helper thread switched into the named netns `netns` and return its result.

    Sockets keep the namespace they were created in, so a data plane can open its port
    sockets this way and use them from any thread; the caller's namespace never changes.
    """
    if netns is None:
        return fn()
    return call_in_netns_path(f"/var/run/netns/{netns}", fn)


def call_in_netns_path(path: str, fn: Callable[[], T]) -> T:
    """`call_in_netns` for a netns given by path (a pod's /proc/PID/ns/net or bind mount)."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            _setns(path)
            result.append(fn())
        except BaseException as exc:  # handed to the caller
            error.append(exc)

    thread = threading.Thread(target=target, name="p4cf-setns")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


@contextmanager
def kit_namespaces(names: Sequence[str]) -> Iterator[list[str]]:
    """Create namespaces `names` and delete them on exit, also on failure."""
    created: list[str] = []
    try:
        for name in names:
            delete_netns(name)  # leftovers of an interrupted run
            create_netns(name)
            created.append(name)
        yield created
    finally:
        for name in created:
            delete_netns(name)


class StarTopology:
    """A switch namespace with one veth per host namespace: the shape of the kit's LB lab.

    Host i (1-based) lives in namespace `<prefix>h<i>` with interface `p4cf-eth0`, MAC
    02:00:00:00:<subnet>:01, address 10.<subnet>.<i>.1/24 where `subnet` is a caller-chosen
    second octet, and a default route via 10.<subnet>.<i>.254, the switch, whose MAC is a
    static (permanent) neighbour entry, so no ARP has to cross the switch. The switch side of
    host i is `p4cf-sw<i>` in namespace `<prefix>sw`. Use as a context manager: everything is
    deleted on exit, also on failure. Host-side offloads are left as the kernel sets them.
    """

    SWITCH_MAC = "02:00:00:00:00:fe"
    HOST_IF = "p4cf-eth0"

    def __init__(self, prefix: str, hosts: int, second_octet: int = 0, mtu: int | None = None) -> None:
        _check_name(prefix)
        self.prefix = prefix
        self.hosts = hosts
        self.octet = second_octet
        self.mtu = mtu
        self.switch_ns = f"{prefix}sw"

    def host_ns(self, i: int) -> str:
        return f"{self.prefix}h{i}"

    def host_ip(self, i: int) -> str:
        return f"10.{self.octet}.{i}.1"

    def host_mac(self, i: int) -> str:
        return f"02:00:00:00:{self.octet:02x}:{i:02x}"

    def switch_if(self, i: int) -> str:
        return f"p4cf-sw{i}"

    def up(self) -> StarTopology:
        """Create namespaces, veths, addresses, routes and neighbour entries."""
        self.down()
        try:
            create_netns(self.switch_ns)
            for i in range(1, self.hosts + 1):
                ns = self.host_ns(i)
                create_netns(ns)
                create_veth(self.switch_if(i), self.HOST_IF, netns=self.switch_ns, peer_netns=ns,
                            mtu=self.mtu)
                ip("link", "set", self.HOST_IF, "address", self.host_mac(i), netns=ns)
                ip("addr", "add", f"{self.host_ip(i)}/24", "dev", self.HOST_IF, netns=ns)
                gw = f"10.{self.octet}.{i}.254"
                ip("neigh", "replace", gw, "lladdr", self.SWITCH_MAC, "dev", self.HOST_IF,
                   "nud", "permanent", netns=ns)
                ip("route", "add", "default", "via", gw, netns=ns)
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        """Delete every namespace of this topology (veths go with them)."""
        for i in range(1, self.hosts + 1):
            delete_netns(self.host_ns(i))
        delete_netns(self.switch_ns)

    def __enter__(self) -> StarTopology:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()
