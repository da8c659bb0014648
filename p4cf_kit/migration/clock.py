"""`PhaseClock`: times each phase of one migration into its record, one `with` per phase.

Why one construct: every phase needs the same steps in the same order (say it started,
take the time, record the seconds, fire an injected failure, mark the downtime's ends),
and a step forgotten in one phase would go unnoticed. The downtime runs from the start
of its first phase to the end of its last (`DOWNTIME`); a phase that fails leaves the
record's times to `MigrationRecord.fail`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from p4cf_kit.errors import InjectedFailure
from p4cf_kit.migration.record import MigrationRecord

FAIL_AT_ENV = "P4CF_MIGRATION_FAIL_AT"
DOWNTIME: tuple[str, str] = ("checkpoint", "switch")   # first and last phase clients can feel


class PhaseClock:
    """The phases of one migration: `current` names the one running (or the last begun)."""

    def __init__(self, record: MigrationRecord, on_phase: Callable[[str], None] | None = None,
                 fail_at: str | None = None) -> None:
        self.record = record
        self.current = "prepare"
        self._on_phase = on_phase
        self._fail_at = fail_at
        self._downtime_t0 = 0.0

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time phase `name`; on a clean exit record it, then inject a failure if asked to."""
        self.current = name
        if self._on_phase is not None:
            self._on_phase(name)
        t0 = time.monotonic()
        if name == DOWNTIME[0]:
            self._downtime_t0 = t0
            self.record.t_start_ns = time.time_ns()
        yield
        self.ended(name, t0)
        if name == DOWNTIME[1]:
            self.record.t_end_ns = time.time_ns()
            self.record.total_s = time.monotonic() - self._downtime_t0

    def ended(self, name: str, t0: float) -> None:
        """Record phase `name` as begun at monotonic `t0`; raise InjectedFailure if it is `fail_at`."""
        self.record.timings.set(name, time.monotonic() - t0)
        if self._fail_at == name:
            raise InjectedFailure(f"failure injected after the {name} phase ({FAIL_AT_ENV}/fail_at)")
