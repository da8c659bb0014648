"""Redis backends that hold N MiB of data (backend.memory_mib), and the migration mode per experiment.

Without a lab: the bulk data's program, run exactly as the kit ships it (`python3 -`, its
source on stdin) against a real redis-server on loopback: loaded, held (INFO memory), read
back, a deleted and a changed key found; the config's name for the size and its older one.
On the real stack (Podman, CRIU, the embedded switch): a redis lab (`rmem`, 10.223.N.0/24)
whose backends hold 32 MiB each; `p4cf experiment --mode lazy` through the CLI, every bulk key
read back after each migration; a bulk key deleted and one changed make an experiment fail
loudly; a size the machine cannot hold is refused by `p4cf up` with the numbers and the fix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migration_labs import home, migration_lab
from p4cf_kit.apps import bulk
from p4cf_kit.apps.datacheck import DataCheck, DataLossError
from p4cf_kit.config import default_config, parse_config, with_choices
from p4cf_kit.errors import ConfigError, KitError
from p4cf_kit.migration import modes
from p4cf_kit.migration.experiment import ExperimentResult, raise_on_data_loss
from p4cf_kit.migration.record import MigrationRecord
from p4cf_kit.paths import REPO_ROOT
from p4cf_kit.podman.redis_image import redis_binary
from p4cf_kit.topology.memory import HEADROOM_MIB, available_mib
from p4cf_kit.workload import resp

P4CF = [sys.executable, "-m", "p4cf_kit"]
LAB = "rmem"
OCTET = 223
MIB = 32


# --- without a lab ----------------------------------------------------------------------------

def _shipped(port: int, action: str, data: bulk.BulkData) -> dict[str, Any]:
    """The bulk program as the kit runs it in a backend's container (apps/bulk.py), here on loopback."""
    proc = subprocess.run([sys.executable, "-", *bulk.arguments(action, port, data)], input=bulk.program(),
                          capture_output=True, text=True, check=True, timeout=60)
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


def _redis(port: int, *args: str) -> object:
    import socket
    with socket.create_connection(("127.0.0.1", port)) as sock:
        return resp.call(sock, resp.Reader(sock), *args)


def test_bulk_data_is_held_read_back_and_a_lost_key_is_found(redis_server: int) -> None:
    data = bulk.BulkData(4, "h2")
    loaded = _shipped(redis_server, "load", data)
    assert loaded["keys"] == data.keys == 4 * 256 and loaded["dbsize"] == data.keys
    bulk.check_held(loaded, data, "p4cf-x-h2-srv")       # INFO memory: at least the data's bytes
    assert bulk.as_check(_shipped(redis_server, "verify", data)).ok
    assert _redis(redis_server, "DEL", "p4cf:bulk:5") == 1
    assert _redis(redis_server, "SET", "p4cf:bulk:9", "not what was loaded") == b"OK"
    check = bulk.as_check(_shipped(redis_server, "verify", data), request=3)
    assert (check.keys, check.present, check.missing, check.wrong) == (1024, 1023, 1, 1)
    assert not check.ok and not check.digests_match
    assert check.describe() == "DATA LOST: 1 of 1024 keys missing, 1 wrong, digests differ"
    other = bulk.as_check(_shipped(redis_server, "verify", bulk.BulkData(4, "h3")))
    assert other.wrong == 1023, "another backend's seed must not verify this backend's data"
    with pytest.raises(KitError, match=r"p4cf-x-h2-srv holds .* MiB in 1024 keys \(INFO memory\) after the kit "
                                       r"loaded 8 MiB in 2048 keys.*lower backend.memory_mib"):
        bulk.check_held(loaded, bulk.BulkData(8, "h2"), "p4cf-x-h2-srv")


def test_memory_for_redis_in_the_config_and_on_the_command_line() -> None:
    cfg = with_choices(default_config(), "redis", MIB)
    assert cfg.workload.kind == "redis" and cfg.backend.memory_mib == MIB
    old = parse_config({"workload": {"kind": "redis"}, "backend": {"ballast_mib": 16}})
    assert with_choices(old, memory_mib=64).backend.memory_mib == 64    # the older key is replaced
    with pytest.raises(ConfigError, match="workload.kind is 'http': set backend.memory_mib = 0"):
        with_choices(cfg, "http")
    from p4cf_kit.cli import build_parser
    args = build_parser().parse_args(["experiment", "-n", "2", "--mode", "lazy", "--memory-mib", "32"])
    assert (args.mode, args.memory_mib) == ("lazy", 32)
    assert build_parser().parse_args(["up", "--ballast-mib", "8"]).memory_mib == 8   # the older flag


def test_an_experiment_with_a_lost_bulk_key_fails_loudly(tmp_path: Path) -> None:
    rec = MigrationRecord(src="h2", dst="h4", backend="h2", migration=1, ok=True)
    rec.set_bulk_check(DataCheck(1, keys=8192, present=8191, missing=1, wrong=2, digests_match=False))
    rec.set_data_check(DataCheck(1, keys=40, present=40, missing=0, wrong=0, digests_match=True))
    assert rec.data_ok is False and rec.as_row()["bulk_ok"] is False
    with pytest.raises(DataLossError, match=r"m1 h2->h4: 0 of 40 keys missing, 0 wrong; "
                                            r"bulk data: 1 of 8192 keys missing, 2 wrong"):
        raise_on_data_loss(ExperimentResult(tmp_path, [rec], {}))


# --- on the real stack ------------------------------------------------------------------------

def _ready() -> bool:
    return os.geteuid() == 0 and shutil.which("podman") is not None and redis_binary() is not None


on_lab = [pytest.mark.podman, pytest.mark.criu, pytest.mark.netns, pytest.mark.slow,
          pytest.mark.skipif(not _ready(), reason="needs root, Podman and redis-server (apt-get install redis-tools)")]


@pytest.fixture(scope="module")
def kit_images() -> None:
    """This checkout's images (the redis image, the client's rr_client.py), rebuilt when changed."""
    if not _ready():
        pytest.skip("needs root, Podman and redis-server")
    from p4cf_kit.podman import images
    images.build_all()


@pytest.fixture(scope="module")
def lab(kit_images: None) -> Iterator[Any]:
    with migration_lab(LAB, OCTET, workload={"kind": "redis"}, backend={"memory_mib": MIB}) as made:
        yield made


def _redis_in(lab: Any, host: str, *commands: tuple[str, ...]) -> None:
    """Send RESP commands to the redis in `host`'s backend container, from inside it (127.0.0.1)."""
    payload = b"".join(resp.encode(*command) for command in commands)
    script = (f"import socket\ns = socket.create_connection(('127.0.0.1', {lab.config.port}))\n"
              f"s.sendall({payload!r})\nseen = b''\n"
              f"while seen.count(b'\\r\\n') < {len(commands)}:\n    seen += s.recv(4096)\nprint(seen)\n")
    lab.machine_of(host).podman("exec", "-i", lab.names.server(host), "python3", "-", input=script)


@pytest.mark.usefixtures("kit_images")
class TestRedisLoadedWithData:
    pytestmark = on_lab

    def test_every_backend_holds_its_data_after_bring_up(self, lab: Any) -> None:
        for host in ("h2", "h3"):
            check = bulk.verify(lab.machine_of(host), lab.names.server(host), host, lab.config.port, MIB)
            assert check.ok and check.keys == MIB * 256, check

    def test_experiment_mode_from_the_cli_checks_every_bulk_key(self, lab: Any, tmp_path: Path) -> None:
        mode = "lazy" if modes.support("lazy").available else "stop-and-copy"
        proc = subprocess.run([*P4CF, "experiment", "--lab", LAB, "--mode", mode, "--migrations", "2",
                               "--interval", "1", "--connections", "4", "--rate", "50", "--out", str(tmp_path),
                               "--json"], check=False, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(proc.stdout)
        assert result["mode"] == mode and result["succeeded"] == 2 and result["connections_broken"] == 0, result
        data = result["data"]
        assert data["bulk_checks"] == data["bulk_checks_ok"] == 2 and data["bulk_keys"] == MIB * 256, data
        assert data["bulk_missing"] == data["bulk_wrong"] == data["keys_missing"] == data["keys_wrong"] == 0
        rows = json.loads((Path(result["folder"]) / "raw" / "migrations.json").read_text())
        assert [(r["mode"], r["bulk_ok"], r["bulk_keys"], r["data_ok"]) for r in rows] == \
            [(mode, True, MIB * 256, True)] * 2

    def test_a_lost_bulk_key_fails_the_experiment_loudly(self, lab: Any, tmp_path: Path) -> None:
        lab.close()   # the CLI's experiment took the switch's primary role: a new session takes it back
        where, _ = home(lab)          # backend h2, the one the experiment moves, lives here now
        _redis_in(lab, where, ("DEL", "p4cf:bulk:5"), ("SET", "p4cf:bulk:9", "not what was loaded"))
        with pytest.raises(DataLossError, match=r"data lost or wrong after migration:\n  m1 h[24]->h[24]: "
                                                r"0 of \d+ keys missing, 0 wrong; bulk data: 1 of 8192 keys "
                                                r"missing, 1 wrong\nresults: "):
            lab.experiment(1, mode="stop-and-copy", out=tmp_path, interval_s=0.5, connections=4, warmup_s=0.5)

    def test_a_size_the_machine_cannot_hold_is_refused_with_the_numbers(self, tmp_path: Path) -> None:
        mib = 65536
        need = mib * 3 + HEADROOM_MIB
        if need <= available_mib():
            pytest.skip(f"this machine could hold {need} MiB")
        config = tmp_path / "big.toml"
        config.write_text(f'[lab]\nname = "rbig"\nvip = "10.{OCTET + 1}.0.100"\n'
                          f'subnet_pattern = "10.{OCTET + 1}.{{n}}.0/24"\n')
        proc = subprocess.run([*P4CF, "up", "-c", str(config), "--workload", "redis", "--memory-mib", str(mib)],
                              check=False, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
        assert proc.returncode != 0
        assert (f"backend.memory_mib = {mib}: 2 backends plus one migrating copy need {need} MiB "
                f"({mib} x 3 + {HEADROOM_MIB} MiB headroom), but this machine has") in proc.stderr, proc.stderr
        assert "lower backend.memory_mib (or --memory-mib) to at most" in proc.stderr
        from p4cf_kit.notebook.session import lab_leftovers
        assert lab_leftovers(parse_config({"lab": {"name": "rbig"}})) == []
