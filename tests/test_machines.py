"""Labs across machines, on an emulated second machine reached only over SSH.

The stand-in (`p4cf machine emulate`) has its own namespace, sshd, Podman and uplinks; the kit
reaches it through `RemoteMachine` (SSH and Podman's REST API) exactly as it would a real
server. These tests bring up a lab with hosts on it, send traffic through the switch, check
isolation on both machines, refuse bad input before anything is made, and leave nothing
behind on either machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from p4cf_kit.config import MachineConfig, parse_config
from p4cf_kit.errors import ConfigError, MigrationError, PrerequisiteError
from p4cf_kit.lab import Lab
from p4cf_kit.labels import LABEL
from p4cf_kit.machines import emulated
from p4cf_kit.machines.registry import open_machine
from p4cf_kit.machines.remote import RemoteMachine
from p4cf_kit.podman.runner import podman
from p4cf_kit.topology import cleanup, pods
from p4cf_kit.topology.names import LabNames
from probes import tcp_probe

MACHINE = "tm"
P4CF = [sys.executable, "-m", "p4cf_kit"]
SERVER_IMAGE = "localhost/p4cf-tcp-server:latest"
DISK_MIB = 1024  # the emulated machine's disk: a tmpfs, so a full disk can be tried


def _ready() -> bool:
    return os.geteuid() == 0 and Path("/usr/sbin/sshd").exists() and \
        podman("image", "exists", SERVER_IMAGE, check=False).returncode == 0


pytestmark = [pytest.mark.podman, pytest.mark.netns, pytest.mark.slow,
              pytest.mark.skipif(not _ready(), reason="needs root, openssh-server (make test-system) "
                                                      "and the kit images (p4cf images build)")]


def p4cf(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*P4CF, *args], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, f"p4cf {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc


def two_machine_config(name: str, octet: int, **machine: object) -> dict[str, object]:
    """h1 (client) and h2 here, h3 and h4 on the emulated machine."""
    return {"lab": {"name": name, "hosts": 4, "vip": f"10.{octet}.0.100",
                    "subnet_pattern": f"10.{octet}.{{n}}.0/24"},
            "machines": {MACHINE: {"emulated": True, **machine}},
            "hosts": {"h3": {"machine": MACHINE}, "h4": {"machine": MACHINE}}}


@pytest.fixture(scope="module")
def machine() -> Iterator[RemoteMachine]:
    """The emulated machine, made through the CLI as a user would, with the images pushed."""
    emulated.remove(MACHINE)
    out = p4cf("machine", "emulate", MACHINE, "--link-gbit", "10", "--disk-mib", str(DISK_MIB), "--json")
    assert json.loads(out.stdout)["uplinks"] == ["up0", "up1"]
    pushed = p4cf("images", "push", MACHINE)
    assert "tcp-server" in pushed.stdout
    again = p4cf("images", "push", MACHINE)
    assert again.stdout.count("already there") == 2, again.stdout  # same id: nothing copied
    m = open_machine(MachineConfig(MACHINE, emulated=True))
    yield m
    m.close()
    emulated.remove(MACHINE)


def remote_leftovers(m: RemoteMachine, lab: str) -> dict[str, list[str]]:
    names = LabNames(lab)
    sel = ["--filter", f"label={LABEL}", "--filter", f"label={names.lab_label}", "--format",
           "{{.Names}}"]
    bridges = m.run(["sh", "-c", "ls /sys/class/net | grep -v -e '^lo$' -e '^eth0$' -e '^up[0-9]$' || true"]
                    ).stdout.split()
    return {"containers": m.podman("ps", "-a", *sel).stdout.split(),
            "pods": m.podman("pod", "ps", "--filter", f"label={names.lab_label}", "--format",
                             "{{.Name}}").stdout.split(),
            "networks": [n for n in m.podman("network", "ls", "--format", "{{.Name}}").stdout.split()
                         if n.startswith(names.prefix)],
            "interfaces": bridges,
            "nft": [t for t in m.run(["nft", "list", "tables"]).stdout.split() if t == names.nft_table]}


def probe(lab: Lab, host: str, ip: str, timeout: float = 1.0) -> str:
    """A TCP connect from `host`'s pod, run on the host's own machine."""
    h = lab.config.host(host)
    m = lab.machine_of(h)
    return tcp_probe(m, pods.pod_net(lab.names, h, m).netns_path, ip, lab.config.port, timeout)


def test_doctor_checks_the_machine_over_ssh(machine: RemoteMachine) -> None:
    out = p4cf("doctor", "--machine", MACHINE, "--json", check=False)
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert out.returncode == 0, checks
    assert set(checks) >= {"reachable", "podman", "criu", "pycriu", "kernel", "tools", "images", "uplinks", "switch"}
    assert "runc" in checks["podman"]["detail"]
    assert checks["switch"]["detail"] == "can run the kit's switch: bmv2, embedded", checks["switch"]


def test_two_machine_lab_up_traffic_isolation_down(machine: RemoteMachine) -> None:
    cfg = parse_config(two_machine_config("tx", 205))
    lab = Lab(cfg)
    cleanup.down("tx")
    report = lab.up()
    try:
        print(f"\ntwo-machine lab up in {report.total_s:.2f} s")
        st = lab.status()
        assert st["hosts"]["h3"]["machine"] == MACHINE
        assert list(st["hosts"]["h3"]["containers"]) == ["p4cf-tx-h3-srv"]
        # h3's server runs on the other machine's Podman, not on this one
        assert machine.podman("container", "exists", "p4cf-tx-h3-srv", check=False).returncode == 0
        assert podman("container", "exists", "p4cf-tx-h3-srv", check=False).returncode != 0
        run = lab.traffic(connections=16, rate=20, duration=2)
        assert run.wait(timeout=30) == 0
        replies = run.replies()
        per_host = replies.groupby("host").size().to_dict()
        assert set(per_host) == {"h2", "h3"}, per_host   # both machines serve through the switch
        assert run.summary()["totals"]["broken"] == 0
        counters = lab.counters().set_index("host")
        assert counters.loc["h3", "packets"] >= per_host["h3"]
        run.stop()
        # a server on the idle remote host joins the pool through the switch
        assert lab.pool(["h2", "h4"]) == ["h2", "h4"]
        assert probe(lab, "h1", str(cfg.vip)) == "connected"
        # the switch is the only path, on both machines
        assert probe(lab, "h1", str(cfg.host("h4").ip)) == "TimeoutError"
        assert probe(lab, "h3", str(cfg.host("h4").ip)) == "TimeoutError"
        assert probe(lab, "h4", str(cfg.host("h2").ip)) == "TimeoutError"
    finally:
        removed = lab.down()
    assert any(c.startswith(f"{MACHINE}:") for c in removed["containers"]), removed
    left = remote_leftovers(machine, "tx")
    assert not any(left.values()), left
    # the cables are back, unplugged, ready for the next lab
    assert Path("/sys/class/net/p4cfm-tm-0").exists() and Path("/sys/class/net/p4cfm-tm-1").exists()


@pytest.mark.parametrize("transfer", ["ssh", "tcp"])
def test_migrations_across_machines_under_traffic(machine: RemoteMachine, transfer: str) -> None:
    """Both directions under traffic with a timed transfer (over SSH, or a direct TCP stream
    whose images leave as CRIU finishes them), then a transfer that fails (injected after the
    stream) rolls back: the backend serves at the source, nothing is left at the destination,
    and no connection breaks or loses a reply."""
    cfg = parse_config(two_machine_config("tg", 208, transfer=transfer))
    lab = Lab(cfg)
    cleanup.down("tg")
    lab.up()
    try:
        run = lab.traffic(connections=8, rate=40, duration=14)
        time.sleep(1.5)
        out = lab.migrate("h2", "h4")                      # this machine -> the other
        assert out.ok and out.machines == f"local->{MACHINE}" and out.transfer_via == transfer, out
        assert out.timings.transfer and out.transfer_bytes > 1_000_000 and out.transfer_mb_s
        # over a direct stream the images CRIU finished leave during the dump (the pages, first)
        assert (out.transfer_early_bytes > 0) == (transfer == "tcp"), out.transfer_early_bytes
        assert out.sockets_rewritten >= 1                  # the connections hashed to h2
        assert out.nudged >= 1                             # from the sender in h4's pod there
        assert machine.podman("container", "inspect", "--format", "{{.State.Status}}",
                              "p4cf-tg-h4-srv").stdout.strip() == "running"
        assert podman("container", "exists", "p4cf-tg-h2-srv", check=False).returncode != 0
        print(f"\nlocal->{MACHINE} over {transfer}: transfer {out.transfer_bytes / 1e6:.1f} MB in "
              f"{out.timings.transfer:.3f} s ({out.transfer_mb_s} MB/s), total {out.total_s:.3f} s")
        time.sleep(1.5)
        back = lab.migrate("h4", "h2")                     # and back
        assert back.ok and back.machines == f"{MACHINE}->local", back
        assert back.nudged >= 1                            # the local side nudges the clients
        assert (back.transfer_early_bytes > 0) == (transfer == "tcp"), back.transfer_early_bytes
        time.sleep(1.5)
        with pytest.raises(MigrationError) as failed:
            lab.migrate("h2", "h4", fail_at="transfer")
        rec = failed.value.record
        assert rec is not None and rec.failed_phase == "transfer" and rec.rolled_back, rec
        assert podman("container", "inspect", "--format", "{{.State.Status}}",
                      "p4cf-tg-h2-srv").stdout.strip() == "running"
        assert machine.podman("ps", "-a", "--filter", "name=p4cf-tg-h4", "--format",
                              "{{.Names}}").stdout.split() in ([], ["p4cf-tg-h4-infra"]), "landing left"
        assert lab.pool() == ["h2", "h3"]
        assert run.wait(timeout=60) == 0
        totals = run.summary()["totals"]
        assert totals["broken"] == 0 and totals["received"] == totals["sent"], totals
        row = out.as_row()
        assert row["transfer_s"] == out.timings.transfer and row["machines"] == f"local->{MACHINE}"
    finally:
        lab.down()
    assert not any(remote_leftovers(machine, "tg").values())


def _receiving_end() -> list[int]:
    """Pids of the destination's receiving end: `tar -x -C LANDING` over SSH, `python3 -c ... recv
    NICE LANDING HOST` over tcp (the test is the fault injector: the emulated machine's processes
    are this machine's, so /proc is read here, at once)."""
    landing = f"/var/lib/p4cf/machines/{MACHINE}/storage/overlay-containers/".encode()
    found = []
    for entry in os.listdir("/proc"):
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args[0] == b"tar" and b"-C" in args[:-1] and args[args.index(b"-C") + 1].startswith(landing):
            found.append(int(entry))
        elif (os.path.basename(args[0]).startswith(b"python") and args[1:2] == [b"-c"]
              and args[3:4] == [b"recv"] and args[5:6] and args[5].startswith(landing)):
            found.append(int(entry))      # whichever python3 the machine's shell found (pyenv's here)
    return found


def _cut(m: RemoteMachine, how: str) -> None:
    """Break the transfer midway, as a testbed breaks: the destination's receiving end dies,
    or the destination machine drops off the network (its only link goes down)."""
    if how == "receiver-killed":
        pids = _receiving_end()
        assert pids, "no receiving end on the destination"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    else:
        subprocess.run(["ip", "link", "set", emulated.mgmt_iface(MACHINE), "down"], check=True)


@pytest.mark.parametrize("transfer", ["tcp", "ssh"])
@pytest.mark.parametrize("how", ["receiver-killed", "machine-gone"])
def test_a_transfer_cut_midway_leaves_the_backend_at_the_source(machine: RemoteMachine, how: str,
                                                                transfer: str) -> None:
    """A real cut in the middle of the images' transfer (the link slowed so the transfer takes
    seconds): the migration fails in `transfer`, the backend serves at the source with every
    connection alive, and the destination keeps nothing; when the machine was gone, what it
    kept is removed by the next migration there, which then succeeds."""
    rec = emulated.load(MACHINE)
    assert rec is not None
    cfg = parse_config(two_machine_config("tx", 212, transfer=transfer))
    lab = Lab(cfg)
    cleanup.down("tx")
    lab.up()
    inside = ["ip", "netns", "exec", rec.netns]
    try:
        run = lab.traffic(connections=8, rate=20, duration=0)    # until stopped, after the second migration
        time.sleep(1.5)
        emulated.shape(emulated.mgmt_iface(MACHINE), 0.02)         # 12.9 MB: about 5 s
        emulated.shape(emulated.INSIDE_MGMT, 0.02, netns=rec.netns)
        cutter: list[threading.Timer] = []

        def on_phase(phase: str) -> None:
            if phase == "transfer":
                cutter.append(threading.Timer(1.0, _cut, (machine, how)))
                cutter[0].start()

        t0 = time.monotonic()
        with pytest.raises(MigrationError) as failed:
            lab.migrate("h2", "h4", on_phase=on_phase)
        took = time.monotonic() - t0
        cutter[0].join()
        out = failed.value.record  # type: ignore[attr-defined]
        assert out.failed_phase == "transfer" and out.rolled_back, (out, failed.value)
        print(f"\n{how} ({transfer}): failed and rolled back in {took:.1f} s (rollback {out.rollback_s:.1f} s of it): "
              f"{failed.value}")
        assert podman("container", "inspect", "--format", "{{.State.Status}}",
                      "p4cf-tx-h2-srv").stdout.strip() == "running"
        assert lab.pool() == ["h2", "h3"]
        if how == "machine-gone":
            assert "stays on machine" in str(failed.value)
            subprocess.run(["ip", "link", "set", emulated.mgmt_iface(MACHINE), "up"], check=True)
            subprocess.run([*inside, "ip", "link", "set", emulated.INSIDE_MGMT, "up"], check=True)
        emulated.shape(emulated.mgmt_iface(MACHINE), 10)
        emulated.shape(emulated.INSIDE_MGMT, 10, netns=rec.netns)
        landing = machine.podman("ps", "-a", "--filter", "name=p4cf-tx-h4-srv", "--format", "{{.Names}}")
        if how == "receiver-killed":
            assert landing.stdout.split() == [], "landing left on the destination"
            left = machine.run(["sh", "-c", f"ls /var/lib/p4cf/machines/{MACHINE}/storage/overlay-containers/*/userdata"
                                "/checkpoint 2>/dev/null | head -3"]).stdout
            assert not left.strip(), left
        time.sleep(1)
        again = lab.migrate("h2", "h4")                       # the next one clears what was left
        assert again.ok and again.machines == f"local->{MACHINE}", again
        time.sleep(2)                                         # traffic goes on at the destination
        assert run.stop() == 0
        totals = run.summary()["totals"]
        assert totals["broken"] == 0 and totals["received"] == totals["sent"], totals
    finally:
        subprocess.run(["ip", "link", "set", emulated.mgmt_iface(MACHINE), "up"], check=False)
        subprocess.run([*inside, "ip", "link", "set", emulated.INSIDE_MGMT, "up"], check=False)
        emulated.shape(emulated.mgmt_iface(MACHINE), 10)
        emulated.shape(emulated.INSIDE_MGMT, 10, netns=rec.netns)
        lab.down()
    assert not any(remote_leftovers(machine, "tx").values())


@pytest.mark.parametrize("transfer", ["tcp", "ssh"])
def test_a_full_disk_at_the_destination_leaves_the_backend_at_the_source(machine: RemoteMachine,
                                                                         transfer: str) -> None:
    """The destination's disk fills up (a file takes all but 4 MiB, the checkpoint is about
    13 MB): the migration fails in `transfer` with an error that says so, the backend serves at
    the source with every connection alive, the destination keeps nothing; with space freed the
    next migration succeeds."""
    graphroot = machine.podman("info", "--format", "{{.Store.GraphRoot}}").stdout.strip()
    fill = f"{graphroot}/p4cf-test-fill"
    cfg = parse_config(two_machine_config("tx", 213, transfer=transfer))
    lab = Lab(cfg)
    cleanup.down("tx")
    lab.up()
    try:
        run = lab.traffic(connections=8, rate=20, duration=0)
        time.sleep(1.5)
        machine.run(["sh", "-c", f"avail=$(df -k --output=avail {graphroot} | tail -1); "
                     f"fallocate -l $(( (avail - 4096) * 1024 )) {fill}"], check=True)
        with pytest.raises(MigrationError) as failed:
            lab.migrate("h2", "h4")
        out = failed.value.record  # type: ignore[attr-defined]
        print(f"\ndisk-full ({transfer}): {failed.value}")
        assert out.failed_phase == "transfer" and out.rolled_back, (out, failed.value)
        assert "disk" in str(failed.value) and "full" in str(failed.value), str(failed.value)
        assert podman("container", "inspect", "--format", "{{.State.Status}}",
                      "p4cf-tx-h2-srv").stdout.strip() == "running"
        assert lab.pool() == ["h2", "h3"]
        landing = machine.podman("ps", "-a", "--filter", "name=p4cf-tx-h4-srv", "--format", "{{.Names}}")
        assert landing.stdout.split() == [], "landing left on the destination"
        in_storage = machine.run(["podman", "ps", "-a", "--external", "--filter", "name=p4cf-tx-h4-srv",
                                  "--format", "{{.Names}}"]).stdout   # the storage library's own list too
        assert in_storage.split() == [], "the landing's name is still taken in the destination's storage"
        left = machine.run(["sh", "-c", f"ls -d {graphroot}/overlay-containers/*/userdata/checkpoint "
                            "2>/dev/null | head -3"]).stdout
        assert not left.strip(), left
        machine.run(["rm", "-f", fill], check=True)
        again = lab.migrate("h2", "h4")
        assert again.ok and again.machines == f"local->{MACHINE}", again
        time.sleep(2)
        assert run.stop() == 0
        totals = run.summary()["totals"]
        assert totals["broken"] == 0 and totals["received"] == totals["sent"], totals
    finally:
        machine.run(["rm", "-f", fill])
        lab.down()
    assert not any(remote_leftovers(machine, "tx").values())


def test_bad_machine_input_is_refused_before_anything_is_made(machine: RemoteMachine, tmp_path: Path) -> None:
    rec = emulated.load(MACHINE)
    assert rec is not None

    def refused(doc: dict[str, object], *words: str) -> None:
        lab = Lab(parse_config(doc))
        with pytest.raises((PrerequisiteError, ConfigError)) as err:
            lab.up()
        for word in words:
            assert word in str(err.value), str(err.value)
        assert podman("pod", "ps", "--filter", f"label={lab.names.lab_label}", "--format",
                      "{{.Name}}").stdout.strip() == ""

    key = tmp_path / "key"
    key.write_text(Path(rec.identity).read_text())
    key.chmod(0o600)
    base = two_machine_config("tb", 206)
    # nobody listens there: unreachable, named, with the fix
    unreachable = dict(base, machines={MACHINE: {"podman": "ssh://root@127.0.0.1:1/run/podman/podman.sock",
                                                 "identity": str(key), "uplinks": ["up0", "up1"]}},
                       switch={"ports": {"3": "p4cfm-tm-0", "4": "p4cfm-tm-1"}})
    refused(unreachable, MACHINE, "cannot be reached")
    # a wrong socket path: sshd answers, Podman does not
    wrong_sock = dict(unreachable, machines={MACHINE: {
        "podman": f"ssh://root@{rec.machine_addr}:22/run/nothing/podman.sock", "identity": str(key),
        "known_hosts": rec.known_hosts, "uplinks": ["up0", "up1"]}})
    refused(wrong_sock, MACHINE, "Podman")
    # an uplink the machine does not have
    refused(dict(base, machines={MACHINE: {"emulated": True, "uplinks": ["up0", "nope9"]}}), "nope9", MACHINE)
    # an image missing there
    refused(dict(base, images={"server": "localhost/p4cf-base:latest"}), "p4cf images push")
    # the workload's own image (redis) missing there: the push command names it
    refused(dict(base, workload={"kind": "redis"}), f"p4cf images push {MACHINE} --image localhost/p4cf-redis:latest")
    # a port map naming a NIC the switch's machine does not have
    refused(dict(base, switch={"ports": {"3": "p4cf-nope"}}), "p4cf-nope")
    # an unknown host key is never accepted
    strange = tmp_path / "known_hosts"
    strange.write_text("")
    refused(dict(unreachable, machines={MACHINE: {
        "podman": rec.podman_url, "identity": str(key), "known_hosts": str(strange),
        "uplinks": ["up0", "up1"]}}), "host key")


def test_remote_switch_over_mutual_tls_spans_both_machines(machine: RemoteMachine, tmp_path: Path) -> None:
    """A switch the kit does not run (BMv2 started by the user in a box of its own, P4Runtime
    over mutual TLS on a management address): the kit pushes the user's pipeline files, maps
    hosts to the box's port numbers (h3 on the other machine sits on port 7), migrates across
    machines through it, and on `down` removes its entries but leaves the switch running."""
    from hw_switch import GRPC_ADDR, hardware_switch, make_pki
    from p4cf_kit.control.connection import SwitchConnection
    from p4cf_kit.control.loadbalancer import LoadBalancer
    from p4cf_kit.errors import SwitchError
    from p4cf_kit.switch.targets import Bmv2Target

    pki = make_pki(tmp_path / "pki")
    files = Bmv2Target().pipeline()  # the load balancer compiled for this switch (BMv2 JSON)
    rec = emulated.load(MACHINE)
    assert rec is not None
    doc: dict[str, object] = {
        "lab": {"name": "tw", "hosts": 3, "backends": ["h2"], "vip": "10.209.0.100",
                "subnet_pattern": "10.209.{n}.0/24"},
        "machines": {MACHINE: {"emulated": True}}, "hosts": {"h3": {"machine": MACHINE}},
        "switch": {"target": "remote", "grpc_addr": GRPC_ADDR, "p4info": str(files.p4info),
                   "device_config": str(files.device_config),
                   "tls": {"ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key)},
                   "ports": {"1": "local:p4cf-t-nic1", "2": "local:p4cf-t-nic2", "7": f"{MACHINE}:up0"}}}
    cfg = parse_config(doc)
    assert [(h.name, h.port) for h in cfg.hosts] == [("h1", 1), ("h2", 2), ("h3", 7)]
    cleanup.down("tw")
    front = {1: "p4cf-t-nic1", 2: "p4cf-t-nic2"}
    with hardware_switch(pki, front, {7: rec.uplinks["up0"]}, tmp_path / "bmv2.log") as pid:
        # a CA that did not sign the switch's certificate: refused, nothing made
        wrong = {**doc, "switch": {**doc["switch"], "tls": {"ca": str(pki.other_ca),  # type: ignore[dict-item]
                                                            "cert": str(pki.client_cert),
                                                            "key": str(pki.client_key)}}}
        with pytest.raises(SwitchError, match="TLS"):
            Lab(parse_config(wrong)).up(timeout=5)
        assert podman("pod", "ps", "--filter", "label=p4cf.lab=tw", "--format", "{{.Name}}").stdout.split() == []
        lab = Lab(cfg)
        lab.up()
        try:
            st = lab.status()
            assert st["switch"]["target"] == "remote" and st["switch"]["running"], st["switch"]
            run = lab.traffic(connections=8, rate=40, duration=8)
            time.sleep(1.5)
            out = lab.migrate("h2", "h3")   # this machine -> the other, through the user's switch
            assert out.ok and out.machines == f"local->{MACHINE}", out
            assert run.wait(timeout=60) == 0
            totals = run.summary()["totals"]
            assert totals["broken"] == 0 and totals["received"] == totals["sent"], totals
            assert lab.pool() == ["h3"]
            counters = lab.counters().set_index("host")
            assert counters.loc["h3", "packets"] > 0   # BMv2's direct counters, read over TLS
            from p4cf_kit.recovery import restart_switch
            again = restart_switch(lab)   # after a reboot: pipeline and entries pushed again
            assert again.pid is None and again.pool == ["h3"] and lab.pool() == ["h3"], again
            assert probe(lab, "h1", str(cfg.vip)) == "connected"
        finally:
            here = [b for h, b in lab.bridges.items() if h != "h3"]   # this machine's host bridges
            removed = lab.down()
        assert any("entries removed" in s for s in removed["switch"]), removed
        # this machine's NICs cabled to the user's switch left their bridges, and the bridges went
        assert not [nic for nic in front.values() if Path(f"/sys/class/net/{nic}/master").exists()]
        assert here and not [b for b in here if Path(f"/sys/class/net/{b}").exists()], here
        assert Path(f"/proc/{pid}").exists()          # the user's switch still runs, emptied
        with SwitchConnection(GRPC_ADDR, tls=cfg.switch.tls) as conn:
            assert LoadBalancer(conn).state().vip is None
    assert not any(remote_leftovers(machine, "tw").values())
    assert Path(f"/sys/class/net/{rec.uplinks['up0']}").exists()   # the cable is back


@pytest.mark.parametrize("target", ["bmv2", "embedded"])
def test_the_kits_switch_on_the_other_machine(machine: RemoteMachine, target: str) -> None:
    """`[switch] machine`: the kit starts its switch (BMv2 or embedded) on the emulated machine
    over SSH, in a namespace there, with this machine's hosts cabled to it and P4Runtime forwarded
    over SSH; traffic and migrations in both directions pass through it, a switch killed there is
    restarted with the lab kept, and `down` leaves nothing on either machine."""
    lab_name = "te" if target == "bmv2" else "tf"
    doc = two_machine_config(lab_name, 209 if target == "bmv2" else 210)
    doc["switch"] = {"target": target, "machine": MACHINE}
    cfg = parse_config(doc)
    assert [(h.machine, h.uplink) for h in cfg.hosts] == [("local", "p4cfm-tm-0"), ("local", "p4cfm-tm-1"),
                                                          (MACHINE, ""), (MACHINE, "")]
    lab = Lab(cfg)
    cleanup.down(lab_name)
    lab.up()
    try:
        sw = lab.status()["switch"]
        assert sw["running"] and sw["data_plane"].endswith(f"on {MACHINE}"), sw
        # the switch runs there, in its own namespace, not here
        ns = f"{lab.names.switch_netns}-on-{MACHINE}"
        assert machine.run(["ip", "-n", ns, "link", "show", "up0"]).returncode == 0
        marker = "simple_switch_grpc" if target == "bmv2" else "p4cf_kit.switch"
        assert marker in machine.run(["cat", f"/proc/{sw['pid']}/cmdline"]).stdout
        run = lab.traffic(connections=8, rate=40, duration=12)
        time.sleep(1.5)
        out = lab.migrate("h2", "h4")                      # this machine -> the switch's
        assert out.ok and out.machines == f"local->{MACHINE}", out
        time.sleep(1.5)
        back = lab.migrate("h4", "h2")                     # and back
        assert back.ok and back.machines == f"{MACHINE}->local", back
        time.sleep(1.0)
        if target == "embedded":   # the SSH forward of P4Runtime ends: the next session brings it back
            fwd = json.loads((lab.names.state / "switch.json").read_text())["forward_pid"]
            os.kill(fwd, signal.SIGTERM)
            lab.close()
            assert lab.pool() == ["h2", "h3"]
            assert json.loads((lab.names.state / "switch.json").read_text())["forward_pid"] != fwd
        if target == "bmv2":   # the switch dies there under traffic: restarted, the lab kept
            machine.run(["kill", "-9", str(sw["pid"])])
            from p4cf_kit.recovery import restart_switch
            report = restart_switch(lab)
            assert report.entries > 0 and report.pool == ["h2", "h3"], report
        assert run.wait(timeout=60) == 0
        totals = run.summary()["totals"]
        assert totals["broken"] == 0 and totals["received"] == totals["sent"], totals
        per_host = run.replies().groupby("host").size().to_dict()
        assert set(per_host) == {"h2", "h3"}, per_host   # both machines served (h2's server keeps its name)
        assert probe(lab, "h1", str(cfg.host("h4").ip)) == "TimeoutError"   # still the only path
        forward = lab.status()["switch"]["grpc_addr"][len("unix:"):]
    finally:
        lab.down()
    assert not any(remote_leftovers(machine, lab_name).values())
    assert not Path(forward).exists()
    assert ns not in machine.run(["ls", "/run/netns"]).stdout
    assert machine.run(["ip", "link", "show", "up0"]).returncode == 0       # the cables are back there
    assert not Path("/sys/class/net/p4cfm-tm-0/master").exists()            # and free here


def test_cli_up_down_removes_the_emulated_machine(machine: RemoteMachine, tmp_path: Path) -> None:
    """Last: `p4cf down` removes the lab on both machines and the emulated machine itself."""
    conf = tmp_path / "two.toml"
    conf.write_text(f"""
[lab]
name = "tc"
vip = "10.207.0.100"
subnet_pattern = "10.207.{{n}}.0/24"

[machines.{MACHINE}]
emulated = true

[hosts.h3]
machine = "{MACHINE}"
""")
    p4cf("up", "-c", str(conf))
    status = p4cf("status", "--lab", "tc").stdout
    assert f"on {MACHINE}" in status, status
    netns_inode = os.stat(f"/run/netns/p4cf-m-{MACHINE}").st_ino
    out = p4cf("down", "-c", str(conf))
    assert f"emulated machine {MACHINE}: removed" in out.stdout, out.stdout
    left = [pid for pid in os.listdir("/proc") if pid.isdigit() and _netns_inode(pid) == netns_inode]
    assert not left, f"processes left in the removed machine's namespace: {left}"
    assert not Path(f"/run/netns/p4cf-m-{MACHINE}").exists()
    assert not Path(f"/sys/class/net/p4cfm-{MACHINE}-l").exists()
    assert emulated.load(MACHINE) is None


def _netns_inode(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None
