"""A container in a pod on a kit network, started with the kit's Podman configuration
(runc, netavark, kit labels), and nothing left behind afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from p4cf_kit.labels import LABEL, LABEL_KEY, LABEL_VALUE
from p4cf_kit.podman import images
from p4cf_kit.podman.conf import RUNTIME
from p4cf_kit.podman.runner import podman, podman_json

pytestmark = [
    pytest.mark.podman,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (Podman with the kit's configuration)"),
]


@dataclass
class PodUnderTest:
    run_id: str
    network: str
    pod: str
    container: str


def _leftovers(run_id: str) -> dict[str, list]:
    selector = f"label={LABEL_KEY}.run={run_id}"
    return {
        "containers": podman_json("ps", "--all", "--filter", selector, "--format", "json"),
        "pods": podman_json("pod", "ps", "--filter", f"{selector}", "--format", "json"),
        "networks": [n for n in podman_json("network", "ls", "--format", "json")
                     if (n.get("labels") or {}).get(f"{LABEL_KEY}.run") == run_id],
    }


@contextmanager
def kit_pod() -> Iterator[PodUnderTest]:
    """A kit network, a pod on it and a sleeping container in the pod; all removed on exit."""
    images.build_base()
    run_id = secrets.token_hex(3)
    under = PodUnderTest(run_id, f"p4cf-t{run_id}-net", f"p4cf-t{run_id}-pod", f"p4cf-t{run_id}-c1")
    labels = ["--label", LABEL, "--label", f"{LABEL_KEY}.run={run_id}"]
    try:
        podman("network", "create", *labels, under.network)
        podman("pod", "create", *labels, "--name", under.pod, "--network", under.network)
        podman("run", "--detach", *labels, "--pod", under.pod, "--name", under.container,
               "--pull=never", images.BASE_REF, "sleep", "600")
        yield under
    finally:
        podman("pod", "rm", "--force", "--time", "0", under.pod, check=False)
        podman("network", "rm", "--force", under.network, check=False)


@pytest.fixture()
def pod_on_kit_network() -> Iterator[PodUnderTest]:
    with kit_pod() as under:
        yield under


def test_podman_uses_the_kit_configuration() -> None:
    info = podman_json("info", "--format", "json")
    assert info["host"]["ociRuntime"]["name"] == RUNTIME == "runc"
    assert info["host"]["networkBackend"] == "netavark"


def test_container_runs_in_pod_on_kit_network(pod_on_kit_network: PodUnderTest) -> None:
    under = pod_on_kit_network
    ctr = podman_json("container", "inspect", under.container)[0]
    assert ctr["State"]["Running"]
    assert ctr["OCIRuntime"] == "runc"
    assert ctr["Config"]["Labels"][LABEL_KEY] == LABEL_VALUE
    pod = podman_json("pod", "inspect", under.pod)
    pod = pod[0] if isinstance(pod, list) else pod
    assert pod["Labels"][LABEL_KEY] == LABEL_VALUE
    assert ctr["Pod"] == pod["Id"]
    # The pod's infra container holds the network namespace and the address on the kit network.
    infra = podman_json("container", "inspect", pod["InfraContainerID"])[0]
    address = infra["NetworkSettings"]["Networks"][under.network]["IPAddress"]
    assert address
    out = podman("exec", under.container, "python3", "-c",
                 "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                 f"s.connect(('{address}', 9)); print(s.getsockname()[0])").stdout.strip()
    assert out == address, "the container shares the pod's network namespace"
    net = podman_json("network", "inspect", under.network)[0]
    assert net["labels"][LABEL_KEY] == LABEL_VALUE
    assert net["driver"] == "bridge"


def test_nothing_left_behind() -> None:
    """Containers, pod, network and the pod's network namespace are gone after the exit."""
    with kit_pod() as under:
        pod = podman_json("pod", "inspect", under.pod)
        infra_id = (pod[0] if isinstance(pod, list) else pod)["InfraContainerID"]
        netns = Path(podman_json("container", "inspect", infra_id)[0]["NetworkSettings"]["SandboxKey"])
        assert netns.exists()
    assert _leftovers(under.run_id) == {"containers": [], "pods": [], "networks": []}
    assert not netns.exists(), f"network namespace {netns} left behind"
