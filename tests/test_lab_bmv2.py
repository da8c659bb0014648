"""The lab on BMv2, as README says to run it: `p4cf up --target bmv2`, traffic, a pool change,
`p4cf migrate` under traffic with no broken connection, `p4cf status`, `p4cf down`.

One short lab (`tbm`, subnets 10.159.N.0/24, 4 hosts) for the whole module: the CLI in fresh
processes, traffic from the client container through simple_switch_grpc. Also: BMv2's Thrift
server is reachable only inside the lab's switch netns, and a BMv2 that cannot start (bad JSON,
a P4Info that does not match it, its gRPC port taken) is reported with its log and rolled back.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from p4cf_kit.analysis import load_client_log
from p4cf_kit.analysis.client_log import error_events, replies
from p4cf_kit.config import parse_config
from p4cf_kit.errors import SwitchError
from p4cf_kit.lab import Lab
from p4cf_kit.netns import run_in
from p4cf_kit.podman.runner import podman
from p4cf_kit.switch.bmv2 import compile as p4compile
from p4cf_kit.switch.bmv2.process import DATA_PATH as BMV2_DATA_PATH
from p4cf_kit.switch.targets import get_target, running_pid, stop_switch
from p4cf_kit.topology import cleanup

ROOT = Path(__file__).resolve().parents[1]
LAB = "tbm"
OCTET = 159
IMAGES = ("localhost/p4cf-tcp-server:latest", "localhost/p4cf-tcp-client:latest")


def _ready() -> bool:
    return os.geteuid() == 0 and all(podman("image", "exists", i, check=False).returncode == 0 for i in IMAGES)


pytestmark = [
    pytest.mark.podman, pytest.mark.criu, pytest.mark.netns, pytest.mark.slow,
    pytest.mark.skipif(not _ready(), reason="needs root and the kit images (`p4cf images build`)"),
]


def p4cf(*args: str, check: bool = True) -> dict | subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "p4cf_kit", *args, "--json"], capture_output=True,
                         text=True, timeout=180, cwd=ROOT)
    if not check:
        return out
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    why = get_target("bmv2").unavailable()
    if why:
        pytest.skip(why)
    cfg = tmp_path_factory.mktemp("tbm") / "lab.toml"
    cfg.write_text(f'[lab]\nname = "{LAB}"\nhosts = 4\nvip = "10.{OCTET}.0.100"\n'
                   f'subnet_pattern = "10.{OCTET}.{{n}}.0/24"\nbackends = ["h2"]\n')
    cleanup.down(LAB)
    up = p4cf("up", "--config", str(cfg), "--target", "bmv2")
    print(f"\nBMv2 lab up in {up['up_s']} s")
    lab = Lab.attach(LAB)
    try:
        yield lab
    finally:
        lab.close()
        p4cf("down", "--lab", LAB)


def test_status_names_bmv2_and_its_data_path(lab: Lab) -> None:
    st = p4cf("status", "--lab", LAB)
    assert st["switch"]["running"] and st["switch"]["target"] == "bmv2"
    assert st["switch"]["data_plane"] == BMV2_DATA_PATH
    assert [b["host"] for b in st["pool"]["backends"]] == ["h2"]
    with open(f"/proc/{st['switch']['pid']}/cmdline", "rb") as f:
        assert b"simple_switch_grpc" in f.read()


def test_thrift_is_reachable_only_inside_the_switch_netns(lab: Lab) -> None:
    ns = lab.names.switch_netns
    listening = run_in(ns, ["ss", "-Hltn"]).stdout
    assert ":9090" in listening  # BMv2's Thrift server: in the switch netns ...
    addrs = run_in(ns, ["ip", "-4", "-o", "addr"]).stdout.splitlines()
    assert all(" lo " in line for line in addrs), addrs  # ... which has no address but loopback
    with socket.socket() as s:  # and not in the machine's own netns
        s.settimeout(1)
        assert s.connect_ex(("127.0.0.1", 9090)) != 0 or _someone_else_on_9090()


def _someone_else_on_9090() -> bool:
    """True when a process of the root netns (not a kit BMv2) listens on 9090 itself."""
    return ":9090" in subprocess.run(["ss", "-Hltn", "sport", "= :9090"], capture_output=True, text=True).stdout


def test_pool_change_traffic_and_migration_without_broken_connections(lab: Lab, tmp_path: Path) -> None:
    assert p4cf("pool", "--lab", LAB, "add", "h3")["pool"] == ["h2", "h3"]
    run = lab.traffic(connections=8, rate=50, log_dir=tmp_path)
    try:
        run.wait_rows(40)
        time.sleep(0.5)
        rec = p4cf("migrate", "--lab", LAB, "h2", "h4")
        time.sleep(1.0)
    finally:
        run.stop()
    log = load_client_log(run.csv_path)
    print(f"\nBMv2 migration: total {rec['total_s']} s, phases {[k for k in rec if k.endswith('_s')]}")
    assert rec["ok"] and rec["dst"] == "h4"
    errors = error_events(log)
    assert errors.empty, f"broken connections: {errors[['conn_id', 'event', 'detail']].to_dict('records')}"
    served = set(replies(log)["host"])
    assert served == {"h2", "h3"}  # both backends of the changed pool answered, h2 from h4 after the move
    assert set(p4cf("status", "--lab", LAB)["hosts"]["h4"]["containers"].values()) >= {"running"}


def test_bmv2_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    """Bad JSON / a P4Info that does not match the JSON / a port in use: a clear error (with the
    tail of BMv2's log when it ran), and nothing left running."""
    from p4cf_kit.netns import create_netns, delete_netns
    from p4cf_kit.switch.bmv2.command import Bmv2Options
    from p4cf_kit.switch.bmv2.process import start_bmv2
    from p4cf_kit.switch.bmv2.toolchain import require_simple_switch_grpc

    ns = f"p4cf-t-bad{os.getpid() % 10000}"
    create_netns(ns)
    try:
        bad_json = tmp_path / "bad.json"
        bad_json.write_text("{ not json")
        state = tmp_path / "s1"
        opts = Bmv2Options(ports={}, grpc_addr=f"unix:{state}/p4rt.sock", json=bad_json,
                           netns_path=f"/run/netns/{ns}", log_console=True)
        with pytest.raises(SwitchError) as err:
            start_bmv2(state, require_simple_switch_grpc(), opts, timeout=10)
        assert "switch log" in str(err.value) and "exited" in str(err.value)
        assert running_pid(state) is None

        # A P4Info that does not match the JSON: refused before BMv2 starts (PI would take it).
        target = get_target("bmv2")
        good = p4compile.ensure_compiled()
        build = tmp_path / "build"
        build.mkdir()
        (build / good.json.name).write_bytes(good.json.read_bytes())
        (build / good.p4info.name).write_text(good.p4info.read_text().replace("bitwidth: 14", "bitwidth: 15"))
        os.environ[p4compile.BUILD_DIR_ENV] = str(build)
        try:
            with pytest.raises(SwitchError, match="MyIngress.ecmp_nhop.*15.*14"):
                target.start(tmp_path / "s4", {}, f"unix:{tmp_path}/s4/p4rt.sock", 1, f"/run/netns/{ns}")
        finally:
            del os.environ[p4compile.BUILD_DIR_ENV]
        assert running_pid(tmp_path / "s4") is None

        state2 = tmp_path / "s2"
        target.start(state2, {}, f"unix:{state2}/p4rt.sock", 1, f"/run/netns/{ns}", timeout=30)
        try:
            # A port in use (Thrift's 9090, held by the running switch in the same netns): a second
            # BMv2 there exits, and says so.
            state3 = tmp_path / "s3"
            with pytest.raises(SwitchError) as err3:
                target.start(state3, {}, f"unix:{state3}/p4rt.sock", 1, f"/run/netns/{ns}", timeout=10)
            assert "switch log" in str(err3.value)
        finally:
            stop_switch(state2)
        assert running_pid(state2) is None and running_pid(tmp_path / "s3") is None
    finally:
        delete_netns(ns)


def test_lab_rolls_back_when_bmv2_cannot_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lab whose BMv2 is refused (its P4Info does not describe its JSON) comes down again whole."""
    from test_lab import assert_clean
    why = get_target("bmv2").unavailable()
    if why:
        pytest.skip(why)
    good = p4compile.ensure_compiled()
    build = tmp_path / "build"
    build.mkdir()
    (build / good.json.name).write_bytes(good.json.read_bytes())
    (build / good.p4info.name).write_text(good.p4info.read_text().replace("bitwidth: 14", "bitwidth: 13"))
    monkeypatch.setenv(p4compile.BUILD_DIR_ENV, str(build))
    name = "tbr"
    cleanup.down(name)
    cfg = parse_config({"lab": {"name": name, "hosts": 2, "vip": f"10.{OCTET + 1}.0.100",
                                "subnet_pattern": f"10.{OCTET + 1}.{{n}}.0/24"}, "switch": {"target": "bmv2"}})
    with pytest.raises(SwitchError, match="does not describe the BMv2 JSON"):
        Lab(cfg).up()
    assert_clean(name)


def test_experiment_and_migration_notebook_on_bmv2(lab: Lab, tmp_path: Path) -> None:
    """`p4cf experiment` and notebook 03 (attached through P4CF_CONFIG) on the BMv2 lab."""
    from p4cf_kit.commands import demo
    out = p4cf("experiment", "--lab", LAB, "--migrations", "2", "--interval", "2", "--connections", "8",
               "--out", str(tmp_path / "results"))
    assert out["succeeded"] == 2 and out["connections_broken"] == 0, out
    cfg = tmp_path / "bmv2.toml"
    cfg.write_text(f'[lab]\nname = "{LAB}"\nhosts = 4\nvip = "10.{OCTET}.0.100"\n'
                   f'subnet_pattern = "10.{OCTET}.{{n}}.0/24"\nbackends = ["h2"]\n\n[switch]\ntarget = "bmv2"\n')
    notebook = ROOT / "notebooks" / "03_migration.ipynb"
    demo.execute_notebook(notebook, tmp_path / notebook.name,
                          env={"P4CF_CONFIG": str(cfg), "P4CF_RESULTS_DIR": str(tmp_path / "nb-results")})
    made = {p.stem for p in (tmp_path / "nb-results").glob("*/figures/*.png")}
    assert {"timeline-m1", "downtime-connections-m1"} <= made, made
    assert p4cf("status", "--lab", LAB)["switch"]["target"] == "bmv2"   # attached: left up
