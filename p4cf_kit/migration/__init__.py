"""Live migration of a backend container between host networks: checkpoint (CRIU via
Podman), rewrite the sockets' address, restore, point the switch; timed, with rollback.

One job per module:
  plan          check a request against the running lab, resolve pods/containers/paths
  rewrite       move a checkpoint's sockets to another address, give it a new identity
  phases        checkpoint, rewrite, restore, switch, cleanup (one function each)
  nudge         ICMP (RFC 6069) from the restored side: clients leave RTO backoff at once
  netns_lock    CRIU's network lock left in the source pod, and releasing it
  tuning        rto_min on the pods' routes
  rollback      put the backend back at its source from whatever state a failure left
  migrate       the orchestration: `migrate(lab, src, dst) -> MigrationRecord`
  record        MigrationRecord, PhaseTimings
  clock         PhaseClock: times each phase into the record (one `with` per phase)
  experiment    N migrations under traffic into a results folder (`p4cf experiment`)
"""

from p4cf_kit.migration.migrate import FAIL_AT_ENV, InjectedFailure, migrate
from p4cf_kit.migration.record import PHASES, MigrationRecord, PhaseTimings

__all__ = ["FAIL_AT_ENV", "InjectedFailure", "MigrationRecord", "PHASES", "PhaseTimings", "migrate"]
