"""Putting a backend back at its source after a failed migration, from what is really there.

Why it looks instead of remembering: a phase can fail halfway (a restore that
started the container and then failed, a switch write whose reply was lost), so
rollback asks Podman and the switch where things are and moves only what must
move, keeping the client's connections wherever the backend still has them:

0. A staged restore still waiting at its gate is called off, and a checkpoint command
   still tidying up is waited for.
1. A backend running at the destination is checkpointed there in place (which locks that
   netns, so nothing it held can send a RST).
2. Unless the backend still runs at the source (a checkpoint that failed before CRIU
   stopped it), its images go back into the source container's checkpoint folder (a new
   container, made like a landing one, when cleanup had already removed it), are rewritten
   back to the source's address, and the source container is restored in place.
3. The landing container is removed, the switch's slot is pointed at the source (if it
   pointed elsewhere), the restored connections are nudged out of their backoff
   (nudge.py), and any CRIU lock left at the destination is lifted.

A lazy migration (lazy.py) is the exception: until every page has arrived, the backend's
memory exists only behind the source's page server, and Podman holds the source container
until that checkpoint ends, so a failure there restarts the backend fresh at the source
(`restart_at_source`) and says so, rather than leave a backend with holes in its memory.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from p4cf_kit.children import settle
from p4cf_kit.errors import KitError, RollbackError
from p4cf_kit.migration import nudge, phases
from p4cf_kit.migration.netns_lock import release_lock
from p4cf_kit.migration.plan import (
    BACKEND_LABEL,
    LOCATION_LABEL,
    LabLike,
    MigrationPlan,
    container_state,
    images_of,
)
from p4cf_kit.topology.hosts import start_server, wait_listening


@dataclass
class MigrationRun:
    """What a migration has started so far (rollback ends or undoes it)."""

    staged: phases.StagedRestore | None = None
    dump: subprocess.Popen[str] | None = None


def _settle(run: MigrationRun, timeout: float) -> None:
    """Stop what is still in flight: a gated restore, a checkpoint command finishing."""
    if run.staged is not None:
        phases.abort(run.staged)
    settle(run.dump, timeout, drain=True)


def return_to_source(lab: LabLike, plan: MigrationPlan, run: MigrationRun,
                     timeout: float = phases.DEFAULT_TIMEOUT_S) -> float:
    """Make the backend run at `plan.src` with the switch pointing there; returns seconds taken."""
    t0 = time.monotonic()
    step = "settle"
    clients: list[nudge.ClientSeq] = []
    landing = run.staged.images if run.staged is not None else None
    try:
        _settle(run, timeout)
        step = "checkpoint at destination"
        if container_state(plan.dst_container) == "running":
            phases.checkpoint_in_place(plan.dst_container, timeout)
            landing = images_of(plan.dst_container)
        src_state = container_state(plan.src_container)
        if src_state != "running":
            step = "restore at source"
            src_images = plan.src_images
            if src_state is None:   # cleanup had removed its record: a new one, as at a landing
                phases.landing_container(lab, plan, plan.src)
                src_images = images_of(plan.src_container)
            if landing is not None and phases.has_images(landing):
                phases.move_images(landing, src_images)
            if not phases.has_images(src_images):
                raise RollbackError(f"no checkpoint of {plan.backend} is left and it runs nowhere: its "
                                    f"connections are lost; start it again with `p4cf pool set` including "
                                    f"{plan.src.name}")
            phases.rewrite(src_images, str(plan.dst.ip), str(plan.src.ip))
            clients = nudge.client_connections(src_images)
            phases.restore_in_place(plan.src_container, timeout)
            release_lock(plan.src_pod.netns_path)   # the dump's lock, if the restore left it
        step = "remove the landing container"
        phases.remove_container(plan.dst_container)
        step = "switch back to source"
        pool = lab.pool()
        if plan.dst.name in pool:
            phases.point_switch_back(lab, str(plan.dst.ip), plan.src_hop)
        elif plan.src.name not in pool:
            raise RollbackError(f"neither {plan.src.name} nor {plan.dst.name} is in the switch's pool "
                                f"({', '.join(pool)}); fix it with `p4cf pool set`")
        if clients:
            with nudge.raw_socket_in(plan.src_pod.netns_path) as raw:
                nudge.nudge(raw, clients, str(lab.config.vip))
        step = "cleanup"
        release_lock(plan.dst_pod.netns_path)
    except RollbackError:
        raise
    except (KitError, OSError) as exc:
        raise RollbackError(f"rollback failed at '{step}': {exc}") from exc
    return time.monotonic() - t0


def restart_at_source(lab: LabLike, plan: MigrationPlan, run: MigrationRun, stop_source: Callable[[], None],
                      timeout: float = phases.DEFAULT_TIMEOUT_S) -> float:
    """After a lazy migration lost its page source (or failed while the source's memory was only
    behind its page server): no copy of the backend's memory is left to put back, so the lab is
    returned to its layout with a *fresh* server at `plan.src` (same backend id; its old
    connections are gone) and the switch pointing there. Nothing half-restored is left: the
    landing container, the frozen source, the checkpoint commands and CRIU's locks are removed.
    Returns seconds taken; RollbackError naming the step that failed."""
    t0 = time.monotonic()
    step = "stop the page server"
    try:
        stop_source()
        step = "end the restore and the checkpoint"
        if run.staged is not None:
            phases.abort(run.staged)
        settle(run.dump, timeout, drain=True)
        step = "remove both containers"
        phases.remove_container(plan.dst_container)
        phases.remove_container(plan.src_container)
        release_lock(plan.src_pod.netns_path)
        release_lock(plan.dst_pod.netns_path)
        step = "start a fresh server at the source"
        start_server(lab.config, lab.names, plan.src, backend=plan.backend,
                     labels={LOCATION_LABEL: plan.src.name, BACKEND_LABEL: plan.backend})
        wait_listening(plan.src_pod.netns_path, lab.config.port, plan.src_container, timeout=timeout)
        step = "switch back to source"
        if plan.dst.name in lab.pool():
            phases.point_switch_back(lab, str(plan.dst.ip), plan.src_hop)
    except (KitError, OSError) as exc:
        raise RollbackError(f"restart at {plan.src.name} failed at '{step}': {exc}") from exc
    return time.monotonic() - t0
