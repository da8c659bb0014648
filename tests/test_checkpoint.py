"""CRIU as the kit installs it, and a real checkpoint/restore of a container holding an
established TCP connection (Podman + runc + CRIU --tcp-established), no mocks."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from p4cf_kit.checkpoint import criu, criu_images
from p4cf_kit.checkpoint.roundtrip import PORT, tcp_checkpoint_roundtrip
from p4cf_kit.errors import PrerequisiteError
from p4cf_kit.labels import LABEL_KEY
from p4cf_kit.podman import images
from p4cf_kit.podman.runner import podman_json

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CRIU and Podman)")


def test_parse_version() -> None:
    assert criu.parse_version("Version: 4.2.1\nGitID: v4.2.1\n") == (4, 2, 1)
    assert criu.parse_version("Version: 3.17\n") == (3, 17)
    with pytest.raises(PrerequisiteError, match="make criu"):
        criu.parse_version("criu: command not found")


@pytest.mark.criu
@root_only
def test_criu_is_new_enough_and_check_passes() -> None:
    path = criu.require_criu()
    assert criu.criu_version(path)[:2] >= criu.MIN_VERSION
    result = criu.criu_check(path)
    assert result.ok, f"`criu check` failed: {result.output}"


@pytest.mark.criu
def test_pycriu_imports_with_the_venv_protobuf() -> None:
    import google.protobuf

    assert criu_images.pycriu_available(), "pycriu missing: run scripts/setup-criu.sh and scripts/link-pycriu.sh"
    assert google.protobuf.__version__.startswith("3.20.")


@pytest.mark.criu
@pytest.mark.podman
@pytest.mark.slow
@root_only
def test_tcp_connection_survives_checkpoint_and_restore(tmp_path: Path) -> None:
    images.build_base()
    export = tmp_path / "checkpoint.tar"
    result = tcp_checkpoint_roundtrip(export_to=export)
    assert result.ok, result.detail
    assert len(result.run_id) == 6
    assert result.criu_version.startswith("4.")
    for phase in ("setup", "checkpoint", "restore", "total", "cleanup"):
        assert result.timings[phase] > 0
    print(f"roundtrip timings (s): { {k: round(v, 3) for k, v in result.timings.items()} }")

    # The exported checkpoint decodes with pycriu and holds the established connection.
    with tarfile.open(export) as archive:
        archive.extractall(tmp_path / "x", filter="data")
    ckpt = tmp_path / "x" / "checkpoint"
    inventory = criu_images.load_image(ckpt / "inventory.img")
    assert inventory["magic"] == "INVENTORY"
    conns = criu_images.established_tcp(ckpt)
    assert [c.local_port for c in conns] == [PORT]

    # Nothing the roundtrip created is left (all of it carries the label p4cf.run=<run_id>).
    selector = f"label={LABEL_KEY}.run={result.run_id}"
    leftover = podman_json("ps", "--all", "--filter", selector, "--format", "json")
    leftover += podman_json("pod", "ps", "--filter", selector, "--format", "json")
    leftover += [n for n in podman_json("network", "ls", "--format", "json")
                 if (n.get("labels") or {}).get(f"{LABEL_KEY}.run") == result.run_id]
    assert leftover == []


@pytest.mark.criu
@root_only
def test_roundtrip_reports_a_missing_image() -> None:
    result = tcp_checkpoint_roundtrip(image="localhost/p4cf-no-such-image:latest")
    assert not result.ok
    assert "p4cf images build" in result.detail


@pytest.mark.criu
@pytest.mark.podman
@root_only
def test_failed_roundtrip_cleans_up() -> None:
    """An image without python3 fails in setup; the pod and network must still go away."""
    pause = [i for i in podman_json("images", "--format", "json")
             if any(n.startswith("localhost/podman-pause:") for n in i.get("Names") or [])]
    if not pause:
        pytest.skip("no podman-pause image yet (Podman builds it with the first pod)")
    result = tcp_checkpoint_roundtrip(image=pause[0]["Names"][0], timeout=8)
    assert not result.ok
    assert result.detail.startswith("setup:") or result.detail.startswith("connect:"), result.detail
    selector = f"label={LABEL_KEY}.run={result.run_id}"
    assert podman_json("ps", "--all", "--filter", selector, "--format", "json") == []
    assert podman_json("pod", "ps", "--filter", selector, "--format", "json") == []
    assert not [n for n in podman_json("network", "ls", "--format", "json")
                if (n.get("labels") or {}).get(f"{LABEL_KEY}.run") == result.run_id]
