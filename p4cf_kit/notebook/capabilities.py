"""What this machine can do now: migrate (CRIU >= 4.2 with pycriu), run the experiment series.

Why: notebooks 03/04 and the migration panel need CRIU; on a machine without it they
must say so in one sentence (with the fix) instead of failing mid-notebook, and
`p4cf demo` skips them with that sentence.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from p4cf_kit.errors import KitError

if TYPE_CHECKING:
    from p4cf_kit.lab import Lab


def migration_unavailable_reason() -> str | None:
    """None when this machine can live-migrate, else why not and how to fix it."""
    from p4cf_kit.checkpoint.criu import require_criu
    try:
        require_criu()
    except KitError as exc:
        return f"migration needs CRIU: {exc}"
    if importlib.util.find_spec("pycriu") is None:
        return "migration needs pycriu in the kit's Python: run `make setup` (scripts/link-pycriu.sh)"
    return None


def experiment_unavailable_reason() -> str | None:
    """None when the experiment series can run (it is a series of migrations)."""
    return migration_unavailable_reason()


def tune_for_migration(lab: Lab) -> str:
    """Apply the TCP tuning the experiment runner applies (rto_min on every pod's gateway
    routes, p4cf_kit.migration), so a single migration here is measured like the series of
    notebook 4: without it a stalled connection waits for its next retransmission backoff."""
    from p4cf_kit.migration.experiment import tune_routes
    from p4cf_kit.migration.tuning import DEFAULT_RTO_MIN_MS
    tune_routes(lab, DEFAULT_RTO_MIN_MS)
    return f"TCP tuning as in the experiment runner: rto_min {DEFAULT_RTO_MIN_MS} ms on every pod's gateway routes"
