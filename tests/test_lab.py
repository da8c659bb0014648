"""The whole lab on the real stack: Podman pods and networks, the embedded switch in its
netns, P4Runtime entries, real TCP through the switch.

Each lab here has its own name and subnets (10.2xx.N.0/24), so these tests can run
beside a developer's default lab. Timings are printed (pytest -s) and, when
P4CF_TEST_ARTIFACTS is set, written to lab-timings.json there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from p4cf_kit.config import LabConfig, parse_config
from p4cf_kit.lab import Lab
from p4cf_kit.labels import LABEL
from p4cf_kit.machines.machine import LOCAL
from p4cf_kit.podman.runner import podman, podman_json
from p4cf_kit.switch import targets as switch_targets
from p4cf_kit.topology import cleanup, isolation, pods
from p4cf_kit.topology.names import LabNames
from probes import tcp_probe

SERVER_IMAGE = "localhost/p4cf-tcp-server:latest"
CLIENT_IMAGE = "localhost/p4cf-tcp-client:latest"
TIMINGS: dict[str, float] = {}


def _images_present() -> bool:
    if os.geteuid() != 0:
        return False
    return all(podman("image", "exists", i, check=False).returncode == 0 for i in (SERVER_IMAGE, CLIENT_IMAGE))


pytestmark = [
    pytest.mark.podman, pytest.mark.netns, pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (Podman, netns, nftables)"),
    pytest.mark.skipif(not _images_present(), reason="kit images missing: run `p4cf images build`"),
]


def config(name: str, hosts: int, octet: int, **lab: object) -> LabConfig:
    return parse_config({"lab": {"name": name, "hosts": hosts, "vip": f"10.{octet}.0.100",
                                 "subnet_pattern": f"10.{octet}.{{n}}.0/24", **lab}})


def leftovers(lab: str) -> dict[str, list[str]]:
    """Everything of lab `lab` still on the machine (empty lists when clean)."""
    names = LabNames(lab)
    sel = ["--filter", f"label={LABEL}", "--filter", f"label={names.lab_label}", "--format", "json"]
    return {
        "containers": [c["Names"][0] for c in podman_json("ps", "-a", *sel)],
        "pods": [p["Name"] for p in podman_json("pod", "ps", *sel)],
        "networks": [n["name"] for n in podman_json("network", "ls", *sel)],
        "interfaces": cleanup.lab_interfaces(names),
        "netns": [names.switch_netns] if cleanup.netns_exists(names.switch_netns) else [],
        "nft": [t for t in isolation.kit_tables() if t == names.nft_table],
        "switch": [str(p) for p in [switch_targets.running_pid(names.state)] if p],
    }


def assert_clean(lab: str) -> None:
    left = leftovers(lab)
    assert not any(left.values()), f"left behind: { {k: v for k, v in left.items() if v} }"


def record(key: str, seconds: float) -> None:
    TIMINGS[key] = round(seconds, 3)
    print(f"\n{key}: {seconds:.2f} s")
    out = os.environ.get("P4CF_TEST_ARTIFACTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "lab-timings.json").write_text(json.dumps(TIMINGS, indent=2))


def probe(lab: Lab, host: str, ip: str, timeout: float = 1.0) -> str:
    """Try a TCP connect from `host`'s netns: connected / TimeoutError / ..."""
    ns = pods.pod_net(lab.names, lab.config.host(host)).netns_path
    return tcp_probe(LOCAL, ns, ip, lab.config.port, timeout)


def replies_per_host(run) -> dict[str, int]:  # noqa: ANN001
    df = run.replies()
    return df.groupby("host").size().to_dict() if len(df) else {}


@pytest.fixture(scope="module")
def lab4() -> Iterator[Lab]:
    lab = Lab(config("t4", 4, 201))
    cleanup.down("t4")
    t0 = time.monotonic()
    lab.up()
    record("up_4_hosts", time.monotonic() - t0)
    yield lab
    bridges = cleanup.network_bridges(leftovers("t4")["networks"])
    assert len(bridges) == 4
    t0 = time.monotonic()
    lab.down()
    record("down_4_hosts", time.monotonic() - t0)
    assert_clean("t4")
    assert not [b for b in bridges if Path(f"/sys/class/net/{b}").exists()], "bridges left behind"


def test_up_builds_the_classic_lab(lab4: Lab) -> None:
    st = lab4.status()
    assert st["switch"]["running"]
    assert list(st["hosts"]["h2"]["containers"]) == ["p4cf-t4-h2-srv"]
    assert list(st["hosts"]["h3"]["containers"]) == ["p4cf-t4-h3-srv"]
    assert st["hosts"]["h4"]["containers"] == {}
    assert [b["host"] for b in st["pool"]["backends"]] == ["h2", "h3"]
    assert st["switch"]["data_plane"].startswith("eBPF"), st["switch"]  # the default where it loads


def test_hosts_are_quiet_and_route_through_the_switch(lab4: Lab) -> None:
    h2 = lab4.config.host("h2")
    ns = pods.pod_net(lab4.names, h2).netns_path

    def sh(*cmd: str) -> str:
        return subprocess.run(["nsenter", f"--net={ns}", *cmd], capture_output=True, text=True).stdout

    assert sh("ip", "-6", "addr", "show").strip() == ""  # IPv6 off: no link-local, no MLD/RS noise
    assert f"{h2.gateway} dev eth0 lladdr {h2.switch_mac} PERMANENT" in sh("ip", "neigh", "show")
    routes = sh("ip", "route", "show")
    assert f"{lab4.config.vip} via {h2.gateway}" in routes and "default" not in routes
    features = sh("ethtool", "-k", "eth0")
    for feature in ("tx-checksumming: off", "tcp-segmentation-offload: off",
                    "generic-segmentation-offload: off", "generic-receive-offload: off"):
        assert feature in features


def test_traffic_spreads_and_counters_match_client(lab4: Lab) -> None:
    before = lab4.counters().set_index("host")
    run = lab4.traffic(connections=32, rate=40, duration=3)
    assert run.wait(timeout=30) == 0
    per_host = replies_per_host(run)
    total = sum(per_host.values())
    assert set(per_host) == {"h2", "h3"}, per_host
    totals = run.summary()["totals"]   # every request answered, once: none lost, none extra
    assert totals["opened"] == 32 and totals["broken"] == 0 and totals["unanswered"] == 0, totals
    assert total == totals["received"] == totals["sent"] > 0, (total, totals)
    assert min(per_host.values()) >= 0.15 * total, f"uneven spread {per_host}"
    after = lab4.counters().set_index("host")
    for host, replies in per_host.items():
        packets = int(after.loc[host, "packets"] - before.loc[host, "packets"])
        conns = int((run.read().query("event == 'open'")["host"] == host).sum()) if "host" in run.read() else 32
        # every request is one segment towards the backend; handshakes, ACKs and FINs add a few per connection
        assert replies <= packets <= replies * 1.5 + 12 * max(conns, 1), (host, replies, packets)
    client_pkts = int(after.loc["h1", "packets"] - before.loc["h1", "packets"])
    assert client_pkts >= total  # every reply went back through ecmp_nhop[0]
    run.stop()


def test_pool_change_shows_in_traffic(lab4: Lab) -> None:
    assert lab4.pool(["h2", "h3", "h4"]) == ["h2", "h3", "h4"]  # starts a server on idle h4
    run = lab4.traffic(connections=32, rate=30, duration=2)
    run.wait(timeout=30)
    per_host = replies_per_host(run)
    run.stop()
    assert set(per_host) == {"h2", "h3", "h4"}, per_host
    assert lab4.remove_backend("h3") == ["h2", "h4"]
    run = lab4.traffic(connections=32, rate=30, duration=2)
    run.wait(timeout=30)
    per_host = replies_per_host(run)
    run.stop()
    assert set(per_host) == {"h2", "h4"}, per_host
    assert lab4.pool(["h2", "h3"]) == ["h2", "h3"]


def test_the_lab_takes_the_primary_role_back_from_another_controller(lab4: Lab) -> None:
    """Another controller (here the CLI, as beside an open notebook) takes the primary role and
    leaves; the lab's own session, a backup since, opens a newer one at its next change
    instead of failing with "not the primary"."""
    assert lab4.pool(["h2", "h3"]) == ["h2", "h3"]      # the lab's session: open, primary
    out = subprocess.run([sys.executable, "-m", "p4cf_kit", "pool", "--lab", "t4", "add", "h4", "--json"],
                         capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert lab4.remove_backend("h4") == ["h2", "h3"]    # a write: it needs the primary role


def test_32_connections_at_a_high_offered_rate_lose_nothing(lab4: Lab) -> None:
    """As many requests as the client can send on 32 connections: each one answered. The rate
    reached is recorded (lab-timings.json), not judged: speed is the benchmarks' business."""
    run = lab4.traffic(connections=32, rate=2000, duration=4)
    assert run.wait(timeout=40) == 0
    df = run.replies()
    totals = run.summary()["totals"]
    run.stop()
    assert totals["opened"] == 32 and totals["broken"] == 0 and totals["unanswered"] == 0, totals
    assert len(df) == totals["received"] == totals["sent"] > 0, (len(df), totals)
    assert df["conn_id"].nunique() == 32
    span = (df["recv_ns"].max() - df["recv_ns"].min()) / 1e9
    rate = len(df) / max(span, 1e-3)
    TIMINGS["messages_per_s_32_connections"] = round(rate)
    print(f"\nmessages/s with 32 connections: {rate:.0f}")


def test_switch_is_the_only_path(lab4: Lab) -> None:
    """Last on lab4: stopping the switch must cut every host-to-host path (no kernel route, no RST)."""
    backend_ip = str(lab4.config.host("h2").ip)
    assert probe(lab4, "h1", str(lab4.config.vip)) == "connected"
    assert probe(lab4, "h1", backend_ip) == "TimeoutError"  # the switch forwards only VIP traffic
    switch_targets.stop_switch(lab4.names.state)
    assert probe(lab4, "h1", str(lab4.config.vip)) == "TimeoutError"
    assert probe(lab4, "h1", backend_ip) == "TimeoutError"
    assert probe(lab4, "h2", str(lab4.config.host("h1").ip)) == "TimeoutError"


def test_two_hosts_up_traffic_down_leaves_nothing() -> None:
    lab = Lab(config("t2", 2, 202))
    cleanup.down("t2")
    t0 = time.monotonic()
    with lab:
        record("up_2_hosts", time.monotonic() - t0)
        run = lab.traffic(connections=4, rate=20, duration=1)
        run.wait(timeout=20)
        assert set(replies_per_host(run)) == {"h2"}
        t0 = time.monotonic()
    record("down_2_hosts", time.monotonic() - t0)
    assert_clean("t2")


def test_eight_hosts() -> None:
    lab = Lab(config("t8", 8, 203, backends=["h2", "h3", "h4", "h5", "h6", "h7", "h8"]))
    cleanup.down("t8")
    t0 = time.monotonic()
    lab.up()
    try:
        record("up_8_hosts", time.monotonic() - t0)
        run = lab.traffic(connections=32, rate=20, duration=2)
        run.wait(timeout=30)
        per_host = replies_per_host(run)
        run.stop()
        assert len(per_host) >= 5 and "h1" not in per_host, per_host
    finally:
        t0 = time.monotonic()
        lab.down()
        record("down_8_hosts", time.monotonic() - t0)
    assert_clean("t8")


def test_down_after_a_crash_midway() -> None:
    """Kill a bring-up once its pods exist; `down` must still find and remove everything."""
    cleanup.down("tc")
    code = ("from p4cf_kit.config import parse_config; from p4cf_kit.lab import Lab; "
            "Lab(parse_config({'lab': {'name': 'tc', 'vip': '10.204.0.100', "
            "'subnet_pattern': '10.204.{n}.0/24'}})).up()")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    try:
        while not leftovers("tc")["pods"]:
            assert proc.poll() is None, "bring-up ended before it could be interrupted"
            assert time.monotonic() < deadline, "no pod appeared within 30 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert any(leftovers("tc").values())
    t0 = time.monotonic()
    cleanup.down("tc")
    record("down_after_crash", time.monotonic() - t0)
    assert_clean("tc")
    cleanup.down("tc")  # idempotent
    assert_clean("tc")


def test_failed_bring_up_rolls_back() -> None:
    """A network that takes h3's subnet makes bring-up fail midway; nothing of the lab may remain."""
    cleanup.down("tr")
    blocker = "p4cf-trblock-net"
    podman("network", "rm", "-f", blocker, check=False)
    podman("network", "create", "--internal", "--label", LABEL, "--subnet", "10.206.3.0/24", blocker)
    try:
        with pytest.raises(Exception) as err:
            Lab(config("tr", 4, 206)).up()
        assert "10.206.3.0/24" in str(err.value) or "subnet" in str(err.value).lower()
        assert_clean("tr")
    finally:
        podman("network", "rm", "-f", blocker, check=False)


def test_cli_up_status_pool_traffic_down(tmp_path: Path) -> None:
    cfg = tmp_path / "lab.toml"
    cfg.write_text('[lab]\nname = "tcli"\nhosts = 3\nvip = "10.207.0.100"\nsubnet_pattern = "10.207.{n}.0/24"\n'
                   'backends = ["h2"]\n')
    cleanup.down("tcli")

    def p4cf(*args: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "p4cf_kit", *args, "--json"], capture_output=True, text=True,
                             timeout=120, cwd=Path(__file__).resolve().parents[1])
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    try:
        assert p4cf("up", "--config", str(cfg))["lab"] == "tcli"
        assert p4cf("status", "--lab", "tcli")["pool"]["count"] == 1
        assert p4cf("pool", "--lab", "tcli", "add", "h3")["pool"] == ["h2", "h3"]
        traffic = p4cf("traffic", "--lab", "tcli", "-n", "8", "--duration", "1", "--rate", "20")
        assert set(traffic["per_host"]) == {"h2", "h3"} and traffic["exit_code"] == 0
    finally:
        removed = p4cf("down", "--lab", "tcli")["removed"]["tcli"]
    assert removed["pods"] and removed["networks"]
    assert_clean("tcli")


def test_bmv2_target_runs_or_says_what_is_missing() -> None:
    from p4cf_kit.errors import PrerequisiteError
    from p4cf_kit.switch.targets import get_target
    cfg = parse_config({"lab": {"name": "tb", "hosts": 2, "vip": "10.209.0.100",
                                "subnet_pattern": "10.209.{n}.0/24"}, "switch": {"target": "bmv2"}})
    lab = Lab(cfg)
    why_not = get_target("bmv2").unavailable()
    if why_not:
        with pytest.raises(PrerequisiteError, match="bmv2"):
            lab.up()
        assert_clean("tb")
        return
    with lab:
        run = lab.traffic(connections=4, rate=20, duration=1)
        run.wait(timeout=30)
        assert set(replies_per_host(run)) == {"h2"}
    assert_clean("tb")
