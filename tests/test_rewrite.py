"""The checkpoint rewrite on a real checkpoint: a kit server container holding an established
TCP connection is exported with Podman + CRIU (--tcp-established), then its sockets are
moved to another address in the extracted image directory."""

from __future__ import annotations

import json
import os
import secrets
import socket
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from p4cf_kit.checkpoint.criu_images import established_tcp, pycriu_available
from p4cf_kit.errors import RewriteError
from p4cf_kit.labels import LABEL, LABEL_KEY, NAME_PREFIX
from p4cf_kit.migration.rewrite import address_words, rewrite_files_image, rewrite_images_dir
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


def test_rewrite_to_a_longer_address(checkpoint: tuple[Path, str], tmp_path: Path) -> None:
    archive, address = checkpoint
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path)
    images = tmp_path / "checkpoint"
    far = "10.1.2.200"    # a last octet >= 16 makes a longer varint: files.img grows
    assert address_words(far, socket.AF_INET)[0] >= 1 << 28
    size = (images / "files.img").stat().st_size
    assert rewrite_images_dir(images, address, far).sockets == 1
    assert (images / "files.img").stat().st_size > size
    assert [c.local for c in established_tcp(images)] == [far]
    assert not list(images.glob("*.tmp"))


def test_not_a_files_image(tmp_path: Path) -> None:
    (tmp_path / "files.img").write_bytes(b"\x00" * 16)
    with pytest.raises(RewriteError, match="not a files.img"):
        rewrite_images_dir(tmp_path, "10.0.0.1", "10.0.0.2")
