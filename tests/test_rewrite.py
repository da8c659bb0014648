"""The checkpoint rewrite on a real checkpoint: a kit server container holding an established
TCP connection is exported with Podman + CRIU (--tcp-established), then its sockets are
moved to another address, in an extracted image directory and inside the export itself."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import tarfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from p4cf_kit.checkpoint.criu_images import established_tcp, pycriu_available
from p4cf_kit.labels import LABEL, LABEL_KEY, NAME_PREFIX
from p4cf_kit.migration.rewrite import (CONFIG_DUMP, SPEC_DUMP, Identity, RewriteError, address_words,
                                        archive_identity, rewrite_archive, rewrite_files_image,
                                        rewrite_images_dir)
from p4cf_kit.podman.runner import podman

SERVER_IMAGE = "localhost/p4cf-tcp-server:latest"
PORT = 8000
NEW_IP = "10.99.7.10"

pytestmark = [
    pytest.mark.criu, pytest.mark.podman,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (Podman and CRIU)"),
    pytest.mark.skipif(not pycriu_available(), reason="pycriu missing: scripts/setup-criu.sh, scripts/link-pycriu.sh"),
]


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """(export tar, server address) of a kit server checkpointed with one established connection."""
    if podman("image", "exists", SERVER_IMAGE, check=False).returncode != 0:
        pytest.skip(f"{SERVER_IMAGE} missing: run `p4cf images build`")
    run = secrets.token_hex(3)
    net, pod, ctr = (f"{NAME_PREFIX}rwt-{run}-net", f"{NAME_PREFIX}rwt-{run}", f"{NAME_PREFIX}rwt-{run}-srv")
    labels = ["--label", LABEL, "--label", f"{LABEL_KEY}.run={run}"]
    archive = tmp_path_factory.mktemp("rewrite") / "checkpoint.tar"
    conn = None
    try:
        podman("network", "create", *labels, net)
        podman("pod", "create", *labels, "--name", pod, "--network", net)
        podman("run", "-d", *labels, "--pod", pod, "--name", ctr, "-e", "P4CF_HOST_ID=hx",
               "-e", f"P4CF_PORT={PORT}", SERVER_IMAGE)
        infra = podman("pod", "inspect", "--format", "{{.InfraContainerID}}", pod).stdout.strip()
        address = json.loads(podman("inspect", "--format", "{{json .NetworkSettings.Networks}}",
                                    infra).stdout)[net]["IPAddress"]
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = socket.create_connection((address, PORT), timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        conn.sendall(b"seq=1 conn=0 t=0\n")
        assert b"count=1" in conn.recv(4096)
        podman("container", "checkpoint", "--tcp-established", "--leave-running", "--compress", "none",
               "--export", str(archive), ctr)
        yield archive, address
    finally:
        if conn is not None:
            conn.close()
        podman("pod", "rm", "-f", "-t", "0", pod, check=False)
        podman("network", "rm", "-f", net, check=False)


def test_rewrite_in_an_extracted_image_dir(checkpoint: tuple[Path, str], tmp_path: Path) -> None:
    archive, address = checkpoint
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path)
    images = tmp_path / "checkpoint"
    before = established_tcp(images)
    assert [c.local for c in before] == [address] and before[0].local_port == PORT
    report = rewrite_images_dir(images, address, NEW_IP)
    assert report.sockets == 1 and report.by_state == {1: 1}    # the established socket; the listener is 0.0.0.0
    after = established_tcp(images)
    assert [(c.local, c.local_port, c.remote, c.remote_port) for c in after] == \
        [(NEW_IP, PORT, before[0].remote, before[0].remote_port)]
    assert rewrite_images_dir(images, address, NEW_IP).sockets == 0   # nothing bound to the old address is left
    with pytest.raises(RewriteError, match="not a CRIU image directory"):
        rewrite_images_dir(tmp_path, address, NEW_IP)


def test_rewrite_is_exact_and_reversible(checkpoint: tuple[Path, str]) -> None:
    archive, address = checkpoint
    original = _members(archive)["checkpoint/files.img"]
    moved, report = rewrite_files_image(original, address, NEW_IP)
    assert report.sockets == 1 and len(moved) == len(original) and moved != original
    back, _ = rewrite_files_image(moved, NEW_IP, address)
    assert back == original                        # only the address words changed, byte for byte


def test_rewrite_archive_in_place_with_identity(checkpoint: tuple[Path, str], tmp_path: Path) -> None:
    archive, address = checkpoint
    copy = tmp_path / "c.tar"
    shutil.copy(archive, copy)
    old_id, old_name = archive_identity(copy)
    before = _members(copy)
    identity = Identity(name="p4cf-rwt-moved-srv", labels={"p4cf.location": "h9"})
    report = rewrite_archive(copy, address, NEW_IP, identity)
    assert report.sockets == 1 and report.labels == {"p4cf.location": "h9"}
    assert copy.stat().st_size == archive.stat().st_size          # patched in place
    after = _members(copy)
    changed = {n for n in before if before[n] != after[n]}
    assert changed == {"checkpoint/files.img", CONFIG_DUMP, SPEC_DUMP}
    config = json.loads(after[CONFIG_DUMP])
    assert config["name"] == "p4cf-rwt-moved-srv" and config["id"] == identity.container_id != old_id
    assert config["labels"]["p4cf.location"] == "h9" and config["labels"]["p4cf"] == "1"
    assert old_id.encode() not in after[CONFIG_DUMP] and old_id.encode() not in after[SPEC_DUMP]
    assert archive_identity(copy) == (identity.container_id, "p4cf-rwt-moved-srv") != (old_id, old_name)
    with tarfile.open(copy) as tar:
        tar.extractall(tmp_path / "x")
    assert [c.local for c in established_tcp(tmp_path / "x" / "checkpoint")] == [NEW_IP]


def test_rewrite_archive_copies_when_sizes_change(checkpoint: tuple[Path, str], tmp_path: Path) -> None:
    archive, address = checkpoint
    copy = tmp_path / "c.tar"
    shutil.copy(archive, copy)
    far = "10.1.2.200"    # a last octet >= 16 makes a longer varint: files.img grows, the tar is rebuilt
    assert address_words(far, socket.AF_INET)[0] >= 1 << 28
    assert rewrite_archive(copy, address, far).sockets == 1
    before, after = _members(archive), _members(copy)
    assert set(before) == set(after)
    assert {n for n in before if before[n] != after[n]} == {"checkpoint/files.img"}
    with tarfile.open(copy) as tar:
        tar.extractall(tmp_path / "x")
    assert [c.local for c in established_tcp(tmp_path / "x" / "checkpoint")] == [far]
    assert not list(tmp_path.glob("*.rewrite"))


def test_not_a_checkpoint(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tar"
    (tmp_path / "f").write_text("x")
    with tarfile.open(bogus, "w") as tar:
        tar.add(tmp_path / "f", arcname="f")
    with pytest.raises(RewriteError, match="not a Podman checkpoint export"):
        rewrite_archive(bogus, "10.0.0.1", "10.0.0.2")
