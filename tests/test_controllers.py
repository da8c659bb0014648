"""The embedded switch driven by independent P4Runtime controllers, as published on PyPI, unmodified.

Each controller lives in its own venv (scripts/setup-controllers.sh, run by `make test`): their
protobuf and grpcio differ from the kit's pins. A test starts a real embedded switch process on
a free loopback port (control plane only: these are P4Runtime tests), runs a small driver
script (tests/controllers/drive_*.py) with the controller's python, and checks the JSON report
it prints: pipeline set-up, writes, wildcard and per-table reads, MODIFY, direct counters,
ALREADY_EXISTS / NOT_FOUND, packet replication entries, and the controller's own reset.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from p4cf_kit.children import stop_child
from p4cf_kit.paths import P4INFO_TXT, REPO_ROOT

VENVS = REPO_ROOT / ".venv-controllers"
DRIVERS = Path(__file__).parent / "controllers"


def controller_python(name: str) -> Path:
    python = VENVS / name / "bin" / "python"
    if not python.exists():
        pytest.skip(f"{python} is missing: run `bash scripts/setup-controllers.sh` (make test does)")
    return python


@pytest.fixture
def switch_addr(tmp_path: Path) -> Iterator[str]:
    """A fresh embedded switch process (no pipeline yet), as `p4cf switch` would start one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"127.0.0.1:{port}"
    log = tmp_path / "switch.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "p4cf_kit.switch.embedded", "--grpc-server-addr", addr,
         "--control-plane-only", "--log-file", str(log)],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with grpc.insecure_channel(addr) as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
        yield addr
    finally:
        stop_child(proc)


def drive(name: str, addr: str) -> dict:
    python = controller_python(name)
    done = subprocess.run([str(python), str(DRIVERS / f"drive_{name}.py"), addr, "1", str(P4INFO_TXT)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{name} driver failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_finsy_drives_and_resets_the_switch(switch_addr: str) -> None:
    r = drive("finsy", switch_addr)
    assert r["primary"] is True
    assert r["wildcard_read"] == 5
    assert r["per_table_read"] == {"MyIngress.ecmp_group": 1, "MyIngress.ecmp_nhop": 3,
                                   "MyEgress.send_frame": 1}
    assert r["modified_port"] == 7
    assert r["counters"] == {"0": [0, 0], "1": [0, 0], "2": [5, 500]}
    assert r["entry_counter_data"] == [0, 0, 5]
    for step, code in (("insert_existing", "ALREADY_EXISTS"), ("delete_missing", "NOT_FOUND"),
                       ("modify_missing", "NOT_FOUND"), ("mc_insert_existing", "ALREADY_EXISTS"),
                       ("mc_delete_missing", "NOT_FOUND")):
        assert r[step] == {"code": "UNKNOWN", "details": {"0": code}}, step  # the spec's batch error
    assert r["pre_read"] == ["P4MulticastGroupEntry", "P4CloneSessionEntry"]
    assert r["after_delete_all"] == []  # delete_all read and removed everything, groups included
    assert r["nhop_default"] == "MyIngress.drop"


def test_aiop4_drives_the_switch(switch_addr: str) -> None:
    r = drive("aiop4", switch_addr)
    assert r["primary"] is True
    assert r["cookie"] == 42
    assert r["wildcard_read"] == 3
    assert r["ports"] == [2, 4, 9]
    assert r["insert_existing"] == {"code": "UNKNOWN", "details": [6]}  # ALREADY_EXISTS
    assert r["delete_missing"] == {"code": "UNKNOWN", "details": [5]}   # NOT_FOUND
    assert r["groups"] == [3]
    assert r["group_again"] == {"code": "UNKNOWN", "details": [6]}
    assert r["after_reset"] == 0
