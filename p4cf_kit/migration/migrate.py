"""`migrate(lab, src, dst)`: live-migrate the backend on host `src` to host `dst`.

Order, and why:
  0. prepare     (before the freeze, not downtime) the landing container is created in the
                 destination pod and its restore started; it waits at a gate in front of
                 runc (podman/restore_gate.py), so Podman's own preparation is done early.
  1. checkpoint  CRIU dump in place with --tcp-established; the phase ends when the server
                 exits (CRIU's last step), while Podman still tidies up. The source netns
                 stays locked so no RST escapes while the backend is away.
  2. rewrite     the images move into the landing container's checkpoint folder (renames)
                 and sockets bound to the source IP get the destination IP.
  3. restore     the gate opens: runc + CRIU restore into the destination pod; the phase
                 ends when CRIU resumes the tasks (its action script says so), while
                 runc, conmon and Podman finish their bookkeeping.
  4. switch      only now one MODIFY points the backend's slot at the new host:
                 earlier, the client's packets would reach a netns without the
                 sockets and be answered with RSTs. Then the restored side
                 nudges each client connection out of its retransmission
                 backoff (nudge.py: ICMP per RFC 6069), so it resumes at once.
  5. cleanup     the restore and checkpoint commands' ends (and stats), the old container
                 record, then CRIU's lock at the source.
Phases 1-4 make the downtime (`total_s`, t_start_ns..t_end_ns); prepare and cleanup are
timed apart.

Any failure rolls back (rollback.return_to_source) and raises
MigrationError(phase=...), naming the phase and the cause; refused requests
raise ConfigError before anything is touched.

Failure injection for tests: `fail_at="restore"` (or the environment variable
P4CF_MIGRATION_FAIL_AT=restore) lets that phase do its real work and then raise,
so rollback is exercised from the real state after each phase.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import NoReturn

from p4cf_kit.errors import ConfigError, InjectedFailure, KitError, MigrationError, RollbackError
from p4cf_kit.lablock import lab_lock, note
from p4cf_kit.migration import cpu_split, modes, phases
from p4cf_kit.migration import nudge as nudging
from p4cf_kit.migration.clock import FAIL_AT_ENV, PhaseClock
from p4cf_kit.migration.lazy import PagesLost
from p4cf_kit.migration.plan import LabLike, MigrationPlan, plan_migration
from p4cf_kit.migration.precopy import PreCopyTransfer
from p4cf_kit.migration.record import PHASES, MigrationRecord
from p4cf_kit.migration.rewrite import pycriu_images
from p4cf_kit.migration.rollback import MigrationRun, restart_at_source, return_to_source
from p4cf_kit.podman.idle_cpu import conmon_of

__all__ = ["FAIL_AT_ENV", "InjectedFailure", "migrate"]


def _fail_at(fail_at: str | None) -> str | None:
    value = fail_at if fail_at is not None else (os.environ.get(FAIL_AT_ENV) or None)
    if value is not None and value not in PHASES:
        raise ConfigError(f"fail_at / {FAIL_AT_ENV} = {value!r}: use one of {', '.join(PHASES)}")
    return value


def _warm_up() -> None:
    """Import pycriu's protobuf modules now, not inside the rewrite phase (about 0.5 s cold)."""
    pycriu_images()


def migrate(lab: LabLike, src: str, dst: str, *, fail_at: str | None = None, migration: int = 1,
            nudge: bool = True, on_phase: Callable[[str], None] | None = None,
            timeout: float = phases.DEFAULT_TIMEOUT_S, mode: str | None = None) -> MigrationRecord:
    """Move the backend running on host `src` to host `dst` while its TCP connections stay open.

    `nudge=False` leaves the clients to their own retransmission timers; `on_phase(name)`
    is called as each phase starts (progress displays; it must be quick). Returns the
    timed MigrationRecord; raises ConfigError for a refused request and
    MigrationError(phase=...) after rolling back a failed one. Runs holding the lab's lock
    (p4cf_kit.lablock), so a second migration waits rather than collide in Podman. `mode`
    (migration/modes.py) defaults to the lab config's migration.mode.
    """
    modes.require(mode or lab.config.migration.mode)    # refused before anything is touched
    state = lab.names.state
    with lab_lock(state, lab.config.name, f"migrating {src}'s backend to {dst}"):
        def phase_started(phase: str) -> None:
            note(state, f"migrating {src}'s backend to {dst} ({phase})")
            if on_phase is not None:
                on_phase(phase)
        return _migrate(lab, src, dst, fail_at=fail_at, migration=migration, nudge=nudge,
                        on_phase=phase_started, timeout=timeout, mode=mode or lab.config.migration.mode)


def _migrate(lab: LabLike, src: str, dst: str, *, fail_at: str | None, migration: int,
             nudge: bool, on_phase: Callable[[str], None] | None, timeout: float, mode: str) -> MigrationRecord:
    inject = _fail_at(fail_at)
    plan = plan_migration(lab, src, dst)
    memory = modes.require_across(mode, plan) if plan.across_machines else modes.transfer_for(mode, plan)
    _warm_up()
    if inject == "transfer" and not plan.across_machines:
        raise ConfigError(f"fail_at = 'transfer': {src} and {dst} are on one machine, so this migration has "
                          "no transfer phase; inject another phase or migrate across machines")
    record = MigrationRecord(src=src, dst=dst, backend=plan.backend, migration=migration,
                             container=plan.src_container, mode=mode)
    clock = PhaseClock(record, on_phase, inject)
    if isinstance(memory, PreCopyTransfer):
        memory.record = record                 # its rounds and their bytes
    if plan.across_machines:
        from p4cf_kit.migration.across import migrate_across
        from p4cf_kit.migration.lazy_across import migrate_lazy_across
        across = migrate_lazy_across if mode == "lazy" else migrate_across
        return across(lab, plan, record, nudge=nudge, started=on_phase or (lambda _phase: None),
                      timeout=timeout, end=lambda _record, phase, t0: clock.ended(phase, t0))
    raw = nudging.raw_socket_in(plan.dst_pod.netns_path) if nudge else None
    clients: list[nudging.ClientSeq] = []
    run = MigrationRun()
    cpus: cpu_split.CpuSplit | None = None
    resumed = False            # the backend runs at the destination (lazy: its pages follow)
    try:
        with clock.phase("prepare"):
            cpus = cpu_split.split(cpu_split.lab_workloads(lab.names.lab_label, lab.names.state, plan.src_pid))
            memory.arm()
            run.staged = phases.prepare(lab, plan, idle_restore=cpus is None)
            memory.staged(run.staged)
        with clock.phase("checkpoint"):
            if cpus is not None:
                cpus.join(conmon_of(plan.src_pid))
            run.dump = phases.start_checkpoint(plan.src_container, plan.src_pid)
            memory.wait_dumped(run.dump, timeout)
        with clock.phase("rewrite"):
            record.checkpoint_bytes = phases.move_images(plan.src_images, run.staged.images)
            report = phases.rewrite(run.staged.images, str(plan.src.ip), str(plan.dst.ip))
            record.sockets_rewritten = report.sockets
        with clock.phase("restore"):
            memory.serve(run.staged, timeout)
            phases.open_gate(run.staged, timeout)
            if raw is not None:   # read while runc and CRIU start (CRIU only reads the images too)
                clients = nudging.client_connections(run.staged.images)
            phases.wait_resumed(run.staged, timeout)
            resumed = True
        with clock.phase("switch"):
            record.nudged = phases.switch_over(lab, plan, raw, clients)
        with clock.phase("cleanup"):
            record.criu_restore_s = phases.finish_restore(run.staged, timeout).criu_s
            if cpus is not None:
                cpus.release(cpu_split.container_processes(plan.dst_container))
            memory.complete(run.staged, run.dump, timeout)
            if mode == "lazy":
                record.pages_done_s = (time.time_ns() - record.t_end_ns) / 1e9
            dumped = phases.finish_checkpoint(run.dump, timeout).criu_s
            # A lazy dump's CRIU statistics do not time the freeze (its tasks stay frozen until the
            # last page is served, and the figure Podman reports is not a duration): left unset.
            record.criu_dump_s = dumped if mode != "lazy" else None
            run.dump = None
            phases.cleanup(plan.src_container, plan.src_pod.netns_path)
    except PagesLost as exc:   # the page source died: the restored copy was stopped, none is whole
        if cpus is not None:
            cpus.release()
        _restart(lab, plan, run, record, clock.current, exc, memory, timeout)
    except (KitError, OSError, KeyboardInterrupt) as exc:   # Ctrl-C too: never leave it half-moved
        if cpus is not None:
            cpus.release()
        if memory.source_held() and not resumed:
            _restart(lab, plan, run, record, clock.current, exc, memory, timeout)
        _roll_back(lab, plan, run, record, clock.current, exc, timeout)
    finally:
        if cpus is not None:
            cpus.release()
        memory.close()
        if raw is not None:
            raw.close()
    record.ok = True
    record.container = plan.dst_container
    return record


def _restart(lab: LabLike, plan: MigrationPlan, run: MigrationRun, record: MigrationRecord, phase: str,
             exc: BaseException, memory: modes.MemoryTransfer, timeout: float) -> NoReturn:
    """A lazy migration failed while the backend's memory was only behind its page source:
    restart it fresh at the source (rollback.restart_at_source) and raise MigrationError saying
    that its memory and connections were lost."""
    record.fail(phase, exc)
    try:
        record.rollback_s = restart_at_source(lab, plan, run, memory.stop_source, timeout)
        record.rolled_back = True
        outcome = (f"its memory was lost with the page source, so a FRESH server runs at {plan.src.name} "
                   f"(backend {plan.backend}, its connections closed) and the switch points there")
    except RollbackError as rb:
        outcome = f"RESTART FAILED: {rb}"
    raise MigrationError(phase, f"{exc}; {outcome}", record=record) from exc


def _roll_back(lab: LabLike, plan: MigrationPlan, run: MigrationRun, record: MigrationRecord,
               phase: str, exc: BaseException, timeout: float) -> None:
    """Return the backend to its source and raise MigrationError(phase) with the record attached."""
    record.fail(phase, exc)
    try:
        record.rollback_s = return_to_source(lab, plan, run, timeout)
        record.rolled_back = True
        outcome = f"rolled back: the backend runs at {plan.src.name} again and the switch points there"
    except RollbackError as rb:
        outcome = f"ROLLBACK FAILED: {rb}"
    raise MigrationError(phase, f"{exc}; {outcome}", record=record) from exc
