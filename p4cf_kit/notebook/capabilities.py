"""What this kit can do on this machine now: migrate, run the experiment series.

Why: notebooks 03/04 and the migration panel depend on the migration room; until it
is there they must say so in one sentence instead of failing with an ImportError,
and `p4cf demo` skips them with that sentence.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable


def migrate_call(lab: Any) -> Callable[..., Any] | None:
    """How to migrate in this kit: `lab.migrate(src, dst)`, else `p4cf_kit.migration.migrate(lab, src, dst)`
    (until the facade has it), else None."""
    method = getattr(lab, "migrate", None)
    if callable(method):
        return method
    if importlib.util.find_spec("p4cf_kit.migration") is None:
        return None
    from p4cf_kit import migration
    fn = getattr(migration, "migrate", None)
    return (lambda src, dst, **kw: fn(lab, src, dst, **kw)) if callable(fn) else None


def migration_unavailable_reason() -> str | None:
    """None when this kit can migrate, else why the migration notebooks cannot run yet."""
    from p4cf_kit.lab import Lab
    if callable(getattr(Lab, "migrate", None)):
        return None
    if importlib.util.find_spec("p4cf_kit.migration") is not None:
        from p4cf_kit import migration
        if callable(getattr(migration, "migrate", None)):
            return None
    return "migration not available yet: this kit has neither Lab.migrate nor p4cf_kit.migration.migrate"


def experiment_unavailable_reason() -> str | None:
    """None when the migration room's experiment runner is there, else why notebook 04 cannot run."""
    if importlib.util.find_spec("p4cf_kit.migration") is None or \
            importlib.util.find_spec("p4cf_kit.migration.experiment") is None:
        return "experiment runner not available yet: p4cf_kit.migration.experiment is missing"
    return None


def tune_for_migration(lab: Any) -> str:
    """Apply the TCP tuning the experiment runner applies (rto_min on every pod's gateway
    routes, p4cf_kit.migration), so a single migration here is measured like the series of
    notebook 4: without it a stalled connection waits for its next retransmission backoff."""
    if experiment_unavailable_reason() is not None:
        return "no TCP tuning: p4cf_kit.migration.experiment is missing"
    from p4cf_kit.migration.experiment import tune_routes
    from p4cf_kit.migration.tuning import DEFAULT_RTO_MIN_MS
    tune_routes(lab, DEFAULT_RTO_MIN_MS)
    return f"TCP tuning as in the experiment runner: rto_min {DEFAULT_RTO_MIN_MS} ms on every pod's gateway routes"
