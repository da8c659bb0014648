"""Copying the kit's images to another machine without a registry: `podman save | load`
through the machine's Podman connection, skipped when the same image id is already there.

Why not `podman image scp`: it ignores `--identity` and loads into the remote's default
storage, not the Podman instance the lab uses.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from p4cf_kit.errors import PodmanError, PrerequisiteError
from p4cf_kit.machines.remote import RemoteMachine
from p4cf_kit.podman.conf import podman_env
from p4cf_kit.podman.images import CLIENT_REF, SERVER_REF
from p4cf_kit.podman.runner import podman, podman_binary

PUSHED_BY_DEFAULT = (SERVER_REF, CLIENT_REF)


@dataclass(frozen=True)
class PushOutcome:
    """One image's push: copied or already there, how many bytes, how long."""

    ref: str
    image_id: str
    copied: bool
    bytes: int
    seconds: float


def image_id(ref: str, run: Callable[..., subprocess.CompletedProcess[str]] = podman) -> str | None:
    proc = run("image", "inspect", "--format", "{{.Id}}", ref, check=False)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def push_image(machine: RemoteMachine, ref: str) -> PushOutcome:
    """Copy local image `ref` to `machine` unless it has the same id already."""
    local_id = image_id(ref)
    if local_id is None:
        raise PrerequisiteError(f"image {ref} is not on this machine; build it with `p4cf images build`")
    t0 = time.monotonic()
    if image_id(ref, machine.podman) == local_id:
        return PushOutcome(ref, local_id[:12], False, 0, time.monotonic() - t0)
    save = subprocess.Popen([podman_binary(), "save", "--format", "oci-archive", ref], env=podman_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert save.stdout is not None
    load = machine.podman_popen("load", stdin=subprocess.PIPE)
    assert load.stdin is not None
    sent = 0
    try:
        while chunk := save.stdout.read(1 << 20):
            load.stdin.write(chunk)
            sent += len(chunk)
        load.stdin.close()
        load.wait(timeout=300)
        load_err = load.stderr.read() if load.stderr else b""
        save_err = save.stderr.read() if save.stderr else b""
        save.wait(timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        save.kill()
        load.kill()
        raise PodmanError(f"copying {ref} to machine {machine.name!r} failed: {exc}") from exc
    if save.returncode != 0:
        raise PodmanError(f"`podman save {ref}` failed: {save_err.decode(errors='replace').strip()}")
    if load.returncode != 0:
        raise PodmanError(f"machine {machine.name!r}: `podman load` failed: "
                          f"{load_err.decode(errors='replace').strip()}")
    # An OCI archive loads without its name on Podman 4.3 when the name is not in the index;
    # tag by id so the lab finds it under `ref`.
    if image_id(ref, machine.podman) != local_id:
        machine.podman("tag", local_id, ref)
    return PushOutcome(ref, local_id[:12], True, sent, time.monotonic() - t0)


def push_images(machine: RemoteMachine, refs: Sequence[str] = PUSHED_BY_DEFAULT) -> list[PushOutcome]:
    """Push each of `refs` to `machine` (see `push_image`)."""
    return [push_image(machine, ref) for ref in refs]
