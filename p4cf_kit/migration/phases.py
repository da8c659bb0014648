"""The phases of a migration, one function each: checkpoint, rewrite, restore, switch, cleanup.

Why separate functions: the orchestration times each, injects failures after
each, and rollback reuses them in the other direction (checkpoint at the
destination, restore at the source). Every Podman call goes through the kit's
runner; every switch write is one MODIFY through the Lab (`move_slot`, or `move_backend`
when rolling back).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p4cf_kit.control.loadbalancer import NextHop
from p4cf_kit.migration.netns_lock import release_lock
from p4cf_kit.migration.plan import BACKEND_LABEL, LOCATION_LABEL, LabLike
from p4cf_kit.migration.rewrite import Identity, RewriteReport, rewrite_archive
from p4cf_kit.podman.runner import podman

DEFAULT_TIMEOUT_S = 60.0
US = 1e-6


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


def checkpoint(container: str, archive: Path, timeout: float = DEFAULT_TIMEOUT_S) -> tuple[int, CriuStats]:
    """CRIU-dump `container` with its established TCP connections into an uncompressed export;
    returns the archive's size and the dump's stats. The container is stopped and its netns
    stays locked."""
    archive.unlink(missing_ok=True)
    proc = podman("container", "checkpoint", "--tcp-established", "--compress", "none", "--print-stats",
                  "--export", str(archive), container, timeout=timeout)
    return archive.stat().st_size, parse_stats(proc.stdout, "checkpoint")


def rewrite(archive: Path, old_ip: str, new_ip: str, container: str, location: str,
            backend: str) -> RewriteReport:
    """Make the checkpoint restorable on host `location`: sockets on `new_ip`, and the
    container named `container` with labels naming where it runs and which backend it is."""
    identity = Identity(name=container, labels={LOCATION_LABEL: location, BACKEND_LABEL: backend})
    return rewrite_archive(archive, old_ip, new_ip, identity)


def restore(archive: Path, pod_id: str, timeout: float = DEFAULT_TIMEOUT_S) -> CriuStats:
    """Restore the export into the pod `pod_id` (Podman 4.3 wants the ID, not the name), keeping
    TCP connections; the pod's address and MAC are used, not the checkpoint's."""
    proc = podman("container", "restore", "--import", str(archive), "--tcp-established", "--pod", pod_id,
                  "--ignore-static-ip", "--ignore-static-mac", "--print-stats", timeout=timeout)
    return parse_stats(proc.stdout, "restore")


def point_switch(lab: LabLike, slot: int, hop: NextHop) -> int:
    """One MODIFY of the backend's ecmp_nhop entry `slot` to `hop`, with no read before it:
    the plan found the slot, so the timed switch phase is a single P4Runtime write."""
    return lab.move_slot(slot, hop.mac, hop.ip, hop.port)


def point_switch_back(lab: LabLike, current_ip: str, hop: NextHop) -> int:
    """Rollback's switch update: the slot is found by the IP it holds now (reads the pool
    first, so it is right whatever the failed migration left; rollback is not a timed phase)."""
    return lab.move_backend(current_ip, hop.mac, hop.ip, hop.port)


def remove_container(name: str) -> None:
    """Forget a container record (the checkpointed source is stopped; missing is fine)."""
    podman("rm", "-f", "-t", "0", name, check=False)


def cleanup(archive: Path, old_container: str, old_netns: str) -> None:
    """After the switch points at the new location: drop the export and the old record, then
    lift CRIU's lock from the old pod's netns (last, so no RST can leave it before)."""
    archive.unlink(missing_ok=True)
    remove_container(old_container)
    release_lock(old_netns)
