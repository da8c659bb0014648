"""The kit's images: built offline from the host's Python, rebuilt only on change, and
able to run python3 and the workload programs (real Podman, no registry)."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from p4cf_kit.cli import main as p4cf_main
from p4cf_kit.errors import PrerequisiteError
from p4cf_kit.labels import LABEL_KEY, LABEL_VALUE
from p4cf_kit.podman import images
from p4cf_kit.podman.runner import podman

pytestmark = [
    pytest.mark.podman,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (Podman with the kit's configuration)"),
]
DEBIAN_PYTHON = "/usr/bin/python3"


def run_in(image: str, *command: str) -> str:
    """Run a throw-away kit container and return its stdout."""
    return podman("run", "--rm", "--pull=never", "--label", f"{LABEL_KEY}={LABEL_VALUE}",
                  image, *command, timeout=120).stdout


@pytest.fixture(scope="module")
def kit_images() -> list[images.BuildOutcome]:
    return images.build_all()


@pytest.fixture()
def scratch_refs() -> Iterator[list[str]]:
    """Image references private to one test, removed afterwards."""
    refs: list[str] = []
    try:
        yield refs
    finally:
        for ref in refs:
            podman("rmi", "--force", ref, check=False)


def test_build_all_then_nothing_to_do(kit_images: list[images.BuildOutcome]) -> None:
    from p4cf_kit.podman.redis_image import REDIS_REF, redis_binary
    redis = [REDIS_REF] if redis_binary() is not None else []   # the redis workload's image, where redis is
    assert [o.ref for o in kit_images] == [images.BASE_REF, images.SERVER_REF, images.CLIENT_REF, *redis]
    again = images.build_all()
    assert not any(o.built for o in again), "unchanged inputs must not rebuild"


def test_images_carry_kit_label_and_input_hash(kit_images: list[images.BuildOutcome]) -> None:
    for outcome in kit_images:
        labels = images.inspect_image(outcome.ref)["Config"]["Labels"]
        assert labels[LABEL_KEY] == LABEL_VALUE
        assert len(labels[images.INPUTS_LABEL]) == 64
        assert outcome.size_bytes < 150e6, f"{outcome.ref} is {outcome.size_bytes / 1e6:.0f} MB"


def test_base_runs_python3_with_stdlib(kit_images: list[images.BuildOutcome]) -> None:
    out = run_in(images.BASE_REF, "python3", "-c",
                 "import sys, ssl, socket, selectors, json, hashlib, ctypes; print(sys.prefix)")
    assert out.strip() == "/usr/local"
    assert run_in(images.BASE_REF, "sh", "-c", "echo busybox-ok").strip() == "busybox-ok"


def test_redis_image_runs_debians_redis_server(kit_images: list[images.BuildOutcome]) -> None:
    from p4cf_kit.podman.redis_image import REDIS_REF, redis_binary
    if redis_binary() is None:
        pytest.skip("no redis-server here: apt-get install redis-tools (README 'Workloads')")
    out = run_in(REDIS_REF, "redis-server", "--version")
    assert out.startswith("Redis server v="), out


def test_server_image_runs_the_workload_server(kit_images: list[images.BuildOutcome]) -> None:
    out = run_in(images.SERVER_REF, "python3", "/opt/p4cf/workload/tcp_server.py", "--help")
    assert "--host-id" in out
    cmd = images.inspect_image(images.SERVER_REF)["Config"]["Cmd"]
    assert cmd == ["python3", "/opt/p4cf/workload/tcp_server.py"]


def test_client_image_runs_the_workload_client(kit_images: list[images.BuildOutcome]) -> None:
    out = podman("run", "--rm", "--pull=never", "--label", f"{LABEL_KEY}={LABEL_VALUE}",
                 images.CLIENT_REF, "--help").stdout
    assert "--vip" in out


def test_inputs_hash_follows_the_base(kit_images: list[images.BuildOutcome]) -> None:
    server = images.WORKLOAD_IMAGES[0]
    one = images.workload_inputs_hash(server, images.BASE_REF, "a" * 64)
    assert one == images.workload_inputs_hash(server, images.BASE_REF, "a" * 64)
    assert one != images.workload_inputs_hash(server, images.BASE_REF, "b" * 64)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(DEBIAN_PYTHON), reason="no Debian python3 at /usr/bin/python3")
def test_base_builds_from_debian_python_too(kit_images: list[images.BuildOutcome],
                                            scratch_refs: list[str]) -> None:
    """A user's machine has Debian's /usr/bin/python3 rather than pyenv's; that must work too."""
    run_id = secrets.token_hex(3)
    base = f"localhost/p4cf-test-base-{run_id}:latest"
    server = images.WorkloadImage("tcp-server", f"localhost/p4cf-test-tcp-server-{run_id}:latest")
    scratch_refs += [server.ref, base]
    built = images.build_base(ref=base, python=DEBIAN_PYTHON)
    assert built.built
    want = subprocess.run([DEBIAN_PYTHON, "-c", "import sys; print(sys.version.split()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert run_in(base, "python3", "-c", "import sys, ssl; print(sys.version.split()[0])").strip() == want
    assert images.build_base(ref=base, python=DEBIAN_PYTHON).built is False
    assert images.build_workload(server, base=base).built
    assert "--host-id" in run_in(server.ref, "python3", "/opt/p4cf/workload/tcp_server.py", "--help")


def test_missing_base_is_a_clear_error(kit_images: list[images.BuildOutcome]) -> None:
    with pytest.raises(PrerequisiteError, match="never pulls"):
        images.build_workload(images.WORKLOAD_IMAGES[0], base="localhost/p4cf-no-such-base:latest")


def test_cli_images_list(kit_images: list[images.BuildOutcome], capsys: pytest.CaptureFixture[str]) -> None:
    assert p4cf_main(["images", "list"]) == 0
    out = capsys.readouterr().out
    for ref in (images.BASE_REF, images.SERVER_REF, images.CLIENT_REF):
        assert ref in out
