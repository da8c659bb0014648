"""The phases of a migration, one function each: prepare, checkpoint, rewrite, restore, switch, cleanup.

Why this shape (a staged restore): a `podman container restore --import` spent about 300 ms
before CRIU even started (CLI, database, a new container, storage, spec, conmon, runc),
all of it inside the downtime. Here the destination's container is created and its restore
started *before* the source is frozen (`prepare`); it waits at a gate in front of runc
(podman/restore_gate.py). The source is checkpointed in place, its images are moved into
the destination container's checkpoint folder (a rename on the same filesystem) and
rewritten there, and only then is the gate opened: the downtime keeps CRIU's dump, the
move and rewrite, runc + CRIU's restore, and one P4Runtime write.

The orchestration (migrate.py) times each phase and injects failures after each; rollback
reuses the in-place variants. Every Podman call goes through the kit's runner.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p4cf_kit.config import HostConfig
from p4cf_kit.control.loadbalancer import NextHop
from p4cf_kit.errors import KitError, PodmanError
from p4cf_kit.machines.remote import RemoteMachine
from p4cf_kit.migration import nudge as nudging
from p4cf_kit.migration.netns_lock import release_lock
from p4cf_kit.migration.plan import BACKEND_LABEL, LOCATION_LABEL, LabLike, MigrationPlan, images_of
from p4cf_kit.migration.rewrite import RewriteReport, rewrite_images_dir
from p4cf_kit.podman.idle_cpu import conmon_of, idle_group, in_idle_group, move_into
from p4cf_kit.podman.remote_gate import RemoteGate
from p4cf_kit.podman.restore_gate import ABORT, GO, RestoreGate
from p4cf_kit.podman.runner import finish, podman, podman_popen
from p4cf_kit.topology.hosts import create_landing

DEFAULT_TIMEOUT_S = 60.0
US = 1e-6
INVENTORY = "inventory.img"       # CRIU's first image; Podman checks it exists before a restore


@dataclass(frozen=True)
class CriuStats:
    """What Podman's --print-stats reports for one checkpoint or restore, in seconds: Podman's
    whole command, the OCI runtime (runc) inside it, and CRIU's own work inside that
    (dump: the time the tasks were frozen; restore: CRIU's restore). CRIU's part is the floor."""

    podman_s: float | None = None
    runtime_s: float | None = None
    criu_s: float | None = None


def parse_stats(stdout: str, kind: str) -> CriuStats:
    """Parse `--print-stats` JSON (absent or malformed output gives empty stats)."""
    try:
        data: dict[str, Any] = json.loads(stdout)
        ctr = (data.get("container_statistics") or [{}])[0]
        criu = ctr.get("criu_statistics") or {}
        crit = criu.get("frozen_time" if kind == "checkpoint" else "restore_time")
        return CriuStats(podman_s=data.get(f"podman_{kind}_duration", 0) * US or None,
                         runtime_s=ctr.get(f"runtime_{kind}_duration", 0) * US or None,
                         criu_s=crit * US if crit is not None else None)
    except (ValueError, AttributeError, IndexError, TypeError):
        return CriuStats()


@dataclass
class StagedRestore:
    """The destination side, made ready before the source is frozen."""

    container_id: str
    images: Path                          # its checkpoint folder: the source's images go here
    gate: RestoreGate | RemoteGate        # here, or on another machine
    process: subprocess.Popen[str]        # `podman container restore`, waiting at the gate
    result: subprocess.CompletedProcess[str] | None = None

    def complete(self, timeout: float = DEFAULT_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """The restore command's end, waited for once; PodmanError when it failed."""
        if self.result is None:
            self.result = finish(self.process, timeout)
        return self.result


def has_images(folder: Path) -> bool:
    """True when `folder` holds a real checkpoint (not the staging placeholder)."""
    inventory = folder / INVENTORY
    return inventory.is_file() and inventory.stat().st_size > 0


def landing_container(lab: LabLike, plan: MigrationPlan, host: HostConfig) -> str:
    """Create (not start) a container for the moving backend in `host`'s pod, labelled with where
    it runs and which backend it is; returns its ID."""
    return create_landing(lab.config, lab.names, host, plan.backend,
                          {LOCATION_LABEL: host.name, BACKEND_LABEL: plan.backend})


def prepare(lab: LabLike, plan: MigrationPlan, idle_restore: bool = True) -> StagedRestore:
    """Create the landing container at the destination and start its restore, which waits at
    its gate. An empty inventory.img passes Podman's check; the real one replaces it.
    `idle_restore=False`: the restore's runc and CRIU keep normal priority once let through
    (on CPUs of the migration's own, migration/cpu_split.py, they only delay the dump's tail)."""
    cid = landing_container(lab, plan, plan.dst)
    images = images_of(cid)
    images.mkdir(parents=True, exist_ok=True)
    (images / INVENTORY).write_bytes(b"")
    group = idle_group()
    gate = RestoreGate(cid, owner=lab.config.name, idle=group is not None and idle_restore)
    process = podman_popen("container", "restore", "--tcp-established", "--print-stats", cid,
                           via=in_idle_group(group))
    staged = StagedRestore(container_id=cid, images=images, gate=gate, process=process)
    _until_staged(staged, lambda: remove_container(cid))
    return staged


def _until_staged(staged: StagedRestore, remove: Callable[[], object]) -> None:
    """Wait until the restore waits at its gate (Podman's part done before the freeze, not in the
    downtime); if it never gets there, call it off and remove the landing, then raise."""
    try:
        staged.gate.wait_reached(staged.process, DEFAULT_TIMEOUT_S)
    except BaseException:
        abort(staged)
        remove()
        raise


def _clear_stale_landing(machine: RemoteMachine, name: str) -> None:
    """A landing a rollback could not remove (its machine was unreachable then) holds the name
    the new one needs: remove it if it never ran. A running one is a backend: leave it (and
    let create fail with Podman's own message)."""
    state = machine.podman("container", "inspect", "--format", "{{.State.Status}}", name, check=False)
    if state.returncode == 0 and state.stdout.strip() in ("created", "configured", "exited", "stopped"):
        machine.podman("rm", "-f", "-t", "0", name, check=False)


def forget_in_storage(machine: RemoteMachine, name: str) -> None:
    """Free a container name that Podman forgot but its storage library still holds: on a full
    disk `podman rm` drops the container from Podman's records, yet the storage library cannot
    rewrite its own list, and the name stays taken. `--storage` (the machine's own podman, over
    SSH: the remote API has no such flag) removes just that record."""
    machine.run(["podman", "rm", "--storage", name], check=False)


def prepare_remote(lab: LabLike, plan: MigrationPlan, machine: RemoteMachine) -> StagedRestore:
    """`prepare` on another machine: the same landing container and gated restore, driven over
    its connection (Podman's API, and SSH for the gate and the placeholder)."""
    name = lab.names.server(plan.dst.name)
    _clear_stale_landing(machine, name)
    labels = {LOCATION_LABEL: plan.dst.name, BACKEND_LABEL: plan.backend}
    try:
        cid = create_landing(lab.config, lab.names, plan.dst, plan.backend, labels, machine=machine)
    except KitError as exc:
        if "already in use" not in str(exc):
            raise
        forget_in_storage(machine, name)     # then once more; a second refusal is Podman's own
        cid = create_landing(lab.config, lab.names, plan.dst, plan.backend, labels, machine=machine)
    try:
        images = images_of(cid, machine)
        machine.run(["sh", "-c", f"mkdir -p {images} && : > {images / INVENTORY}"])
        gate = RemoteGate(machine, cid, owner=lab.config.name)
        process = machine.podman_start("container", "restore", "--tcp-established", "--print-stats", cid)
    except BaseException:
        machine.podman("rm", "-f", "-t", "0", cid, check=False)
        raise
    staged = StagedRestore(container_id=cid, images=images, gate=gate, process=process)
    _until_staged(staged, lambda: machine.podman("rm", "-f", "-t", "0", cid, check=False))
    return staged


def start_checkpoint(container: str, pid: int | None = None) -> subprocess.Popen[str]:
    """Start the in-place CRIU dump of `container` with its established TCP connections, at idle
    CPU priority (podman/idle_cpu.py). The container stops; its netns stays locked
    (netns_lock.py) so no RST escapes. With its main process `pid`, its conmon joins the idle
    group first: the `podman container cleanup` conmon starts when the container stops runs there."""
    group = idle_group()
    if pid:
        move_into(group, conmon_of(pid))
    return podman_popen("container", "checkpoint", "--tcp-established", "--print-stats", container,
                        via=in_idle_group(group))


def wait_dumped(dump: subprocess.Popen[str], pid: int, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Return once CRIU has written the images: it kills the dumped tasks as its last step, so
    the server's exit (a pidfd) says so, while Podman still tidies up. PodmanError when the
    checkpoint command fails first."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        pidfd = None                      # already gone: fall back to the command's end
    deadline = time.monotonic() + timeout
    try:
        while True:
            if pidfd is not None and select.select([pidfd], [], [], 0.0005)[0]:
                return
            if dump.poll() is not None:
                finish(dump, timeout=1)   # raises when it failed
                return
            if pidfd is None:
                time.sleep(0.0005)
            if time.monotonic() > deadline:
                raise PodmanError(f"the checkpoint did not finish within {timeout:.0f} s")
    finally:
        if pidfd is not None:
            os.close(pidfd)


def finish_checkpoint(dump: subprocess.Popen[str], timeout: float = DEFAULT_TIMEOUT_S) -> CriuStats:
    """Wait for the checkpoint command and return its stats."""
    return parse_stats(finish(dump, timeout).stdout, "checkpoint")


def move_images(src: Path, dst: Path) -> int:
    """Move every image file from `src` into `dst` (renames on one filesystem; existing files,
    like the placeholder, are replaced); returns the bytes moved."""
    dst.mkdir(parents=True, exist_ok=True)
    total = 0
    for entry in os.scandir(src):
        if entry.is_file(follow_symlinks=False):
            total += entry.stat(follow_symlinks=False).st_size
            os.replace(entry.path, dst / entry.name)
    return total


def rewrite(images: Path, old_ip: str, new_ip: str) -> RewriteReport:
    """Make the images restorable on the other host network: sockets on `new_ip`."""
    return rewrite_images_dir(images, old_ip, new_ip)


def open_gate(staged: StagedRestore, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Let the staged restore go on to runc and CRIU."""
    staged.gate.answer(GO, staged.process, timeout=timeout)


def wait_resumed(staged: StagedRestore, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Return once the restored backend runs: CRIU's pre-resume signal, or else the restore
    command's successful end; PodmanError when the restore failed."""
    if not staged.gate.wait_resumed(staged.process, timeout):
        staged.complete(timeout=1)                 # ended first: raises when it failed


def finish_restore(staged: StagedRestore, timeout: float = DEFAULT_TIMEOUT_S) -> CriuStats:
    """Wait for the restore command (runc, conmon and Podman's bookkeeping) and return its stats."""
    try:
        return parse_stats(staged.complete(timeout).stdout, "restore")
    finally:
        staged.gate.close()


def abort(staged: StagedRestore) -> None:
    """Call off a staged restore that has not been let through (rollback); never raises."""
    if staged.process.poll() is None and not staged.gate.answered:
        try:
            staged.gate.answer(ABORT, staged.process, timeout=10)
        except (PodmanError, OSError):
            pass
    try:
        staged.complete()
    except PodmanError:
        pass                                       # called off, or failed: rollback looks at the state
    staged.gate.close()


def checkpoint_in_place(container: str, timeout: float = DEFAULT_TIMEOUT_S) -> CriuStats:
    """Dump `container` with its TCP connections and wait for Podman (rollback, floor)."""
    return finish_checkpoint(start_checkpoint(container), timeout)


def restore_in_place(container: str, timeout: float = DEFAULT_TIMEOUT_S) -> CriuStats:
    """Restore `container` from its own checkpoint folder, keeping TCP connections."""
    proc = podman("container", "restore", "--tcp-established", "--print-stats", container, timeout=timeout)
    return parse_stats(proc.stdout, "restore")


def point_switch(lab: LabLike, slot: int, hop: NextHop) -> int:
    """One MODIFY of the backend's ecmp_nhop entry `slot` to `hop`, with no read before it:
    the plan found the slot, so the timed switch phase is a single P4Runtime write."""
    return lab.move_slot(slot, hop.mac, hop.ip, hop.port)


def switch_over(lab: LabLike, plan: MigrationPlan, raw: nudging.RawSender | None,
                clients: list[nudging.ClientSeq]) -> int:
    """The switch phase: one MODIFY to the destination, then each client connection nudged out
    of its backoff (when a raw socket in the destination pod is there); returns nudges sent."""
    point_switch(lab, plan.slot, plan.dst_hop)
    return nudging.nudge(raw, clients, str(lab.config.vip)) if raw is not None else 0


def point_switch_back(lab: LabLike, current_ip: str, hop: NextHop) -> int:
    """Rollback's switch update: the slot is found by the IP it holds now (reads the pool
    first, so it is right whatever the failed migration left; rollback is not a timed phase)."""
    return lab.move_backend(current_ip, hop.mac, hop.ip, hop.port)


def remove_container(name: str) -> None:
    """Forget a container record (the checkpointed source is stopped; missing is fine)."""
    podman("rm", "-f", "-t", "0", name, check=False)


def cleanup(old_container: str, old_netns: str) -> None:
    """After the switch points at the new location: drop the old record (its images were
    moved away), then lift CRIU's lock from the old pod's netns (last, so no RST can leave it
    before)."""
    remove_container(old_container)
    release_lock(old_netns)
