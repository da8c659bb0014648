"""What one migration did and took: `PhaseTimings` and `MigrationRecord`.

Why a record of its own: the analysis room reads migrations as flat dicts
(analysis.phases.PHASE_RECORD_FIELDS, plus `backend`); `as_row()` gives exactly
that, with the few extra facts (error, rollback, sockets rewritten) after them.
Times are CLOCK_REALTIME ns (time.time_ns), the clock of the client log.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

PHASES: tuple[str, ...] = ("prepare", "checkpoint", "rewrite", "transfer", "restore", "switch", "cleanup")


@dataclass
class PhaseTimings:
    """Seconds per phase; None for a phase that did not run. `prepare` (the staged restore,
    before the freeze) and `cleanup` are outside the downtime."""

    prepare: float | None = None
    checkpoint: float | None = None
    rewrite: float | None = None
    transfer: float | None = None   # across machines only: the images crossing the network
    restore: float | None = None
    switch: float | None = None
    cleanup: float | None = None

    def set(self, phase: str, seconds: float) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; phases are {', '.join(PHASES)}")
        setattr(self, phase, seconds)

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


@dataclass
class MigrationRecord:
    """One migration of backend `backend` from host `src` to host `dst`.

    `total_s` spans checkpoint start to switch update end (what clients can feel);
    prepare comes before and cleanup after, each timed on its own. `ok` is False when it failed and was
    rolled back (`failed_phase`, `error`, `rolled_back` say how).
    """

    src: str
    dst: str
    backend: str
    migration: int = 1
    timings: PhaseTimings = field(default_factory=PhaseTimings)
    total_s: float | None = None
    checkpoint_bytes: int = 0
    transfer_bytes: int = 0        # across machines: what crossed the network (tar stream)
    transfer_mb_s: float | None = None     # the rate while bytes moved (the receiver's busy time)
    transfer_early_bytes: int = 0  # of those, what left during the dump, before the transfer phase
    machines: str = ""             # across machines: "SRC_MACHINE->DST_MACHINE"
    transfer_via: str = ""         # across machines: "ssh" or "tcp" (a direct stream)
    t_start_ns: int = 0
    t_end_ns: int = 0
    ok: bool = False
    container: str = ""            # name of the backend's container after the migration
    sockets_rewritten: int = 0
    nudged: int = 0                # ICMP nudges sent to clients after the switch update
    criu_dump_s: float | None = None     # CRIU's own share (Podman --print-stats): tasks frozen
    criu_restore_s: float | None = None  # ... and CRIU's restore; their sum is the floor
    mode: str = "stop-and-copy"          # how memory moved (migration/modes.py)
    pages_done_s: float | None = None    # lazy: switch update end -> last page at the destination
    precopy_rounds: int | None = None    # pre-copy: pre-dump rounds run before the final dump,
    precopy_round_bytes: str = ""        # ... bytes each copied, ";"-separated (checkpoint_bytes: the final)
    failed_phase: str | None = None
    error: str = ""
    rolled_back: bool = False
    rollback_s: float | None = None  # from the failure until the backend serves at the source again
    data_keys: int | None = None         # redis workload: keys the client read back after this migration
    data_missing: int | None = None      # ... of them missing,
    data_wrong: int | None = None        # ... or with another value than written
    data_ok: bool | None = None          # all there and right (digest equal), bulk data too; None: not checked
    bulk_keys: int | None = None         # redis with backend.memory_mib: bulk keys read back from the backend,
    bulk_missing: int | None = None      # ... of them missing,
    bulk_wrong: int | None = None        # ... or wrong;
    bulk_ok: bool | None = None          # all there and right (digest equal); None: not checked

    def set_data_check(self, check: Any) -> None:
        """Record the client's data check after this migration (apps/datacheck.DataCheck)."""
        self.data_keys, self.data_missing, self.data_wrong = check.keys, check.missing, check.wrong
        self.data_ok = bool(check.ok) and self.bulk_ok is not False

    def set_bulk_check(self, check: Any | None) -> None:
        """Record the check of the backend's bulk data (apps/bulk.verify); None: it could not be
        asked, which counts as a failed check. `data_ok` then covers both checks."""
        if check is None:
            self.bulk_ok = False
        else:
            self.bulk_keys, self.bulk_missing, self.bulk_wrong = check.keys, check.missing, check.wrong
            self.bulk_ok = bool(check.ok)
        self.data_ok = self.bulk_ok and self.data_ok is not False

    def set_transfer(self, report: Any) -> None:
        """Record what crossed the network (transfer.TransferReport): the images' bytes, their
        rate, the sockets moved to the destination's address, the rewrite's own time."""
        self.checkpoint_bytes = self.transfer_bytes = report.bytes
        self.transfer_mb_s = round(report.mb_per_s, 1)
        self.transfer_early_bytes = report.early_bytes
        self.sockets_rewritten = report.sockets
        self.timings.set("rewrite", report.rewrite_s)

    def fail(self, phase: str, exc: BaseException) -> None:
        """Mark this migration failed in `phase`: the error, and times that span what ran."""
        self.failed_phase = phase
        self.error = str(exc) or type(exc).__name__
        self.t_start_ns = self.t_start_ns or time.time_ns()
        if not self.t_end_ns:
            self.t_end_ns = time.time_ns()
            self.total_s = None

    def as_row(self) -> dict[str, Any]:
        """A flat dict: analysis.phases' record fields (`<phase>_s`), then the extras."""
        t = self.timings
        return {
            "migration": self.migration, "src": self.src, "dst": self.dst,
            "checkpoint_s": t.checkpoint, "rewrite_s": t.rewrite, "restore_s": t.restore, "switch_s": t.switch,
            "total_s": self.total_s, "checkpoint_bytes": self.checkpoint_bytes,
            "t_start_ns": self.t_start_ns, "t_end_ns": self.t_end_ns, "ok": self.ok, "backend": self.backend,
            "prepare_s": t.prepare, "cleanup_s": t.cleanup, "container": self.container,
            "sockets_rewritten": self.sockets_rewritten,
            "nudged": self.nudged, "criu_dump_s": self.criu_dump_s, "criu_restore_s": self.criu_restore_s,
            "failed_phase": self.failed_phase or "", "error": self.error, "rolled_back": self.rolled_back,
            "rollback_s": self.rollback_s, "transfer_s": t.transfer, "transfer_bytes": self.transfer_bytes,
            "transfer_mb_s": self.transfer_mb_s, "transfer_early_bytes": self.transfer_early_bytes,
            "machines": self.machines, "transfer_via": self.transfer_via,
            "data_keys": self.data_keys, "data_missing": self.data_missing, "data_wrong": self.data_wrong,
            "data_ok": self.data_ok, "bulk_keys": self.bulk_keys, "bulk_missing": self.bulk_missing,
            "bulk_wrong": self.bulk_wrong, "bulk_ok": self.bulk_ok,
            "mode": self.mode, "pages_done_s": self.pages_done_s,
            "precopy_rounds": self.precopy_rounds, "precopy_round_bytes": self.precopy_round_bytes,
        }
