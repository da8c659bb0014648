"""Putting a backend back at its source after a failed migration, from what is really there.

Why it looks instead of remembering: a phase can fail halfway (a restore that
started the container and then failed, a switch write whose reply was lost), so
rollback asks Podman and the switch where things are and moves only what must
move, keeping the client's connections wherever the backend still has them:

1. A backend running at the destination is checkpointed there (which locks that
   netns, so nothing it held can send a RST) and its record removed.
2. Unless the backend still runs at the source (a checkpoint that failed before
   CRIU stopped it), the export is rewritten back to the source's address and
   name and restored into the source pod, under the original IP.
3. The switch's slot is pointed at the source (if it pointed elsewhere), the
   restored connections are nudged out of their backoff (nudge.py), then the
   export is removed and any CRIU lock left at the destination is lifted.
"""

from __future__ import annotations

import time

from p4cf_kit.errors import KitError
from p4cf_kit.migration import nudge, phases
from p4cf_kit.migration.netns_lock import release_lock
from p4cf_kit.migration.plan import LabLike, MigrationPlan, container_state


class RollbackError(KitError):
    """Rollback itself failed; the message says where the backend is left."""


def return_to_source(lab: LabLike, plan: MigrationPlan, timeout: float = phases.DEFAULT_TIMEOUT_S) -> float:
    """Make the backend run at `plan.src` with the switch pointing there; returns seconds taken."""
    t0 = time.monotonic()
    step = "inspect"
    clients: list[nudge.ClientSeq] = []
    try:
        step = "checkpoint at destination"
        if container_state(plan.dst_container) == "running":
            phases.checkpoint(plan.dst_container, plan.archive, timeout)
        phases.remove_container(plan.dst_container)
        if container_state(plan.src_container) != "running":
            step = "restore at source"
            if not plan.archive.exists():
                raise RollbackError(f"no checkpoint of {plan.backend} is left ({plan.archive}) and it runs "
                                    "nowhere: its connections are lost; start it again with "
                                    f"`p4cf pool set` including {plan.src.name}")
            phases.rewrite(plan.archive, str(plan.dst.ip), str(plan.src.ip), plan.src_container,
                           plan.src.name, plan.backend)
            clients = nudge.client_connections(plan.archive)
            phases.remove_container(plan.src_container)
            phases.restore(plan.archive, plan.src_pod.pod_id, timeout)
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
        plan.archive.unlink(missing_ok=True)
        release_lock(plan.dst_pod.netns_path)
    except RollbackError:
        raise
    except (KitError, OSError) as exc:
        raise RollbackError(f"rollback failed at '{step}': {exc}") from exc
    return time.monotonic() - t0
