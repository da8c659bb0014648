"""Fixtures every test module can take (pytest finds them here; no imports needed).

`switch_target`: a running switch of each target (embedded, bmv2), so a test written once runs
on both (tests/targets.py says how each is started). A module overrides `switch_ports` and
`switch_netns` to give the switch its ports and their namespace. `redis_server`: a real
redis-server (this machine's binary) on a loopback port, for the redis workload's own logic.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from p4cf_kit.podman.redis_image import redis_binary
from targets import TARGET_NAMES, RunningSwitch, running_switch


@pytest.fixture
def switch_ports() -> dict[int, str]:
    """Port map of the switch under test (override in a module); none by default."""
    return {}


@pytest.fixture
def switch_netns() -> str | None:
    """The `ip netns` the switch's ports live in (override in a module); None: the root netns."""
    return None


@pytest.fixture(params=TARGET_NAMES)
def switch_target(request: pytest.FixtureRequest, switch_ports: dict[int, str],
                  switch_netns: str | None) -> Iterator[RunningSwitch]:
    """A running switch of target `request.param` on `switch_ports`, stopped after the test."""
    with running_switch(request.param, switch_ports, switch_netns) as sw:
        yield sw


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[int]:
    """A redis-server (no persistence) on a free loopback port, stopped after the test; its port."""
    binary = redis_binary()
    if binary is None:
        pytest.skip("no redis-server here: apt-get install redis-tools (README 'Workloads')")
    port = _free_port()
    exe = tmp_path / "redis-server"
    exe.symlink_to(binary)  # the multi-call binary picks its role from its name
    conf = tmp_path / "redis-h9.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {tmp_path}\n")
    proc = subprocess.Popen([str(exe), str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
