"""A stand-in for a hardware switch: BMv2 that the *user* runs, which the kit only programs.

Why a stand-in: the `remote` target must work with a P4Runtime switch the kit neither starts
nor wires. This one lives in a namespace of its own (the "box"), answers P4Runtime over mutual
TLS on a management address that is not loopback, and has its front-panel ports: veths whose
other ends are this machine's NICs toward it, or the cables of an emulated machine moved in.
Everything it made is undone on exit, cables handed back.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from p4cf_kit.children import stop_child
from p4cf_kit.switch.bmv2.toolchain import find_simple_switch_grpc

BOX = "p4cf-t-box"                 # the switch's namespace
MGMT_HOST, MGMT_BOX = "10.251.9.1", "10.251.9.2"
GRPC_ADDR = f"{MGMT_BOX}:9559"


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc


@dataclass(frozen=True)
class Pki:
    """A CA, the switch's certificate (for its management address) and the kit's client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: trusting it must fail


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def ca(name: str) -> None:
        sh("openssl", "req", "-x509", *ec, "-keyout", str(folder / f"{name}.key"), "-out",
           str(folder / f"{name}.pem"), "-days", "2", "-subj", f"/CN=p4cf test {name}")

    def leaf(name: str, san: str) -> None:
        sh("openssl", "req", *ec, "-keyout", str(folder / f"{name}.key"), "-out", str(folder / f"{name}.csr"),
           "-subj", f"/CN={name}")
        (folder / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        sh("openssl", "x509", "-req", "-in", str(folder / f"{name}.csr"), "-CA", str(folder / "ca.pem"),
           "-CAkey", str(folder / "ca.key"), "-CAcreateserial", "-out", str(folder / f"{name}.pem"),
           "-days", "2", "-extfile", str(folder / f"{name}.ext"))

    ca("ca")
    ca("other")
    leaf("switch", f"IP:{MGMT_BOX}")
    leaf("kit", "DNS:p4cf-controller")
    return Pki(folder / "ca.pem", folder / "switch.pem", folder / "switch.key", folder / "kit.pem",
               folder / "kit.key", folder / "other.pem")


@contextmanager
def hardware_switch(pki: Pki, front: dict[int, str], cables: dict[int, str], log: Path) -> Iterator[int]:
    """Run the box: `front` port -> the NIC name this machine gets (a veth made here), `cables`
    port -> an existing interface of this machine moved into the box (handed back at the end).
    Yields BMv2's pid once its P4Runtime server listens."""
    tool = find_simple_switch_grpc()
    assert tool is not None and tool.binary, "simple_switch_grpc is installed by `make p4lang`"
    sh("ip", "netns", "add", BOX)
    proc = None
    try:
        sh("ip", "link", "add", "p4cf-t-mgmt", "type", "veth", "peer", "name", "mgmt", "netns", BOX)
        sh("ip", "addr", "add", f"{MGMT_HOST}/30", "dev", "p4cf-t-mgmt")
        sh("ip", "link", "set", "p4cf-t-mgmt", "up")
        box = ["ip", "netns", "exec", BOX]
        sh(*box, "sh", "-c", f"ip link set lo up && ip addr add {MGMT_BOX}/30 dev mgmt && ip link set mgmt up")
        ifaces = {}
        for port, nic in front.items():
            sh("ip", "link", "add", nic, "type", "veth", "peer", "name", f"fp{port}", "netns", BOX)
            ifaces[port] = f"fp{port}"
        for port, iface in cables.items():
            sh("ip", "link", "set", iface, "netns", BOX)
            ifaces[port] = iface
        for iface in ifaces.values():
            sh(*box, "sh", "-c", f"ip link set {iface} up; ethtool -K {iface} tx off rx off >/dev/null 2>&1; true")
        args = [*box, tool.binary, "--no-p4", "--device-id", "1", "--log-level", "warn"]
        for port, iface in sorted(ifaces.items()):
            args += ["-i", f"{port}@{iface}"]
        args += ["--", "--grpc-server-addr", GRPC_ADDR, "--grpc-server-ssl",
                 "--grpc-server-cacert", str(pki.ca), "--grpc-server-cert", str(pki.server_cert),
                 "--grpc-server-key", str(pki.server_key), "--grpc-server-with-client-auth"]
        proc = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while sh(*box, "ss", "-ltn", f"sport = :{GRPC_ADDR.rsplit(':')[1]}").stdout.count("LISTEN") == 0:
            assert proc.poll() is None, f"BMv2 exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "BMv2's P4Runtime server did not listen"
            time.sleep(0.1)
        yield proc.pid
    finally:
        if proc is not None:
            stop_child(proc)
        for iface in cables.values():  # hand the cables back before the box goes
            sh("ip", "-n", BOX, "link", "set", iface, "down", "netns", "1", check=False)
        sh("ip", "netns", "del", BOX, check=False)
        sh("ip", "link", "del", "p4cf-t-mgmt", check=False)
