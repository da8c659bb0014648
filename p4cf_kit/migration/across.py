"""A migration whose source and destination hosts are on different machines.

Order, and what differs from a migration within one machine (migrate.py):
  0. prepare     the landing container is created in the destination pod, on its machine,
                 and its restore staged behind the gate as within one machine (on another
                 machine with the kit's runtime files there: machines/runtime_files.py, and
                 the gate driven over SSH: podman/remote_gate.py).
  1. checkpoint  CRIU dump in place on the source machine (its Podman, over SSH when remote);
                 the phase ends when the images are written (dump_watch.py), the command
                 itself is finished in cleanup.
  2. rewrite + transfer
                 one tar stream carries the images from the source's checkpoint folder to the
                 landing container's, with files.img rewritten (transfer.py); its ends were
                 started and connected in prepare, and over a direct stream the images that
                 CRIU finished already left during the checkpoint (`begin`). The
                 rewrite's own time is `rewrite`; the rest is `transfer`, with bytes and MB/s.
                 The source's images are left untouched: a rollback restores from them.
  3. restore     on the destination machine: the gate opens; the phase ends when CRIU resumed.
  4. switch      one MODIFY; client connections are nudged from the destination pod (a raw
                 socket there: nudge.py), their sequence numbers read from whichever copy
                 of the images is on this machine (so not when both ends are other machines).
  5. cleanup     the source's record (and with it its images) goes only now, then CRIU's lock
                 on the source pod is lifted.
From prepare to the switch the kit's side of the migration runs on a CPU of its own and the
lab's other workloads on this machine on the rest, the restore here at normal priority, as
within one machine (cpu_split.py): without it the interleaved benchmark's cross-machine
migrations took longer than its same-machine ones in checkpoint and restore too, not only by
the transfer (benchmarks/migration_downtime.py --machines 2).

Rollback (any phase): the source container is restored in place from its own images first
(the backend serves again before anything waits on a destination that may be gone), then a
staged or half-made landing container is removed with whatever the stream left in it; a
destination that does not answer keeps it, named in the error, until the next migration
there or `p4cf down`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from p4cf_kit.children import settle
from p4cf_kit.errors import KitError, MigrationError
from p4cf_kit.machines.machine import Machine
from p4cf_kit.machines.remote import RemoteMachine
from p4cf_kit.migration import cpu_split, phases
from p4cf_kit.migration import nudge as nudging
from p4cf_kit.migration.dump_watch import DumpWatch
from p4cf_kit.migration.netns_lock import release_lock
from p4cf_kit.migration.plan import LabLike, MigrationPlan, container_state
from p4cf_kit.migration.record import MigrationRecord
from p4cf_kit.migration.transfer import ImageStream, remove_images
from p4cf_kit.podman.idle_cpu import conmon_of
from p4cf_kit.podman.remote_gate import RemoteGate
from p4cf_kit.podman.runner import finish

End = Callable[[MigrationRecord, str, float], None]


class _Landing:
    """The destination container, its restore staged behind the gate on whichever machine."""

    def __init__(self, lab: LabLike, plan: MigrationPlan, idle_restore: bool = True) -> None:
        self.machine: Machine = plan.dst_machine
        if isinstance(self.machine, RemoteMachine):
            self.staged = phases.prepare_remote(lab, plan, self.machine)
        else:
            self.staged = phases.prepare(lab, plan, idle_restore=idle_restore)
        self.container = self.staged.container_id
        self.images = self.staged.images
        self.stream: ImageStream | None = None

    def finish(self, timeout: float) -> phases.CriuStats:
        return phases.finish_restore(self.staged, timeout)

    def remove(self) -> None:
        """Call off and remove the landing container and whatever images reached it; OSError at
        once (its local ends dropped) when the machine does not answer, instead of waiting out
        SSH's timeouts on each step."""
        if self.stream is not None:
            self.stream.abort()
        if isinstance(self.machine, RemoteMachine) and not self.machine.answers():
            if self.staged.process.poll() is None:
                self.staged.process.kill()
            self.staged.process.wait()
            if isinstance(self.staged.gate, RemoteGate):
                self.staged.gate.drop()
            raise OSError(f"machine {self.machine.name!r} does not answer at "
                          f"{self.machine.url.host}:{self.machine.url.port}")
        phases.abort(self.staged)
        remove_images(self.machine, self.images)   # first: on a full disk this frees what Podman needs
        self.machine.podman("rm", "-f", "-t", "0", self.container, check=False)
        if isinstance(self.machine, RemoteMachine):
            phases.forget_in_storage(self.machine, self.container)


def _raw_sender(plan: MigrationPlan) -> nudging.RawSender | None:
    """The nudge's socket in the destination pod, opened before the freeze; None when neither
    copy of the images will be on this machine to read the clients' sequence numbers from."""
    if plan.dst_machine.is_local:
        return nudging.raw_socket_in(plan.dst_pod.netns_path)
    if plan.src_machine.is_local:
        try:
            return nudging.RemoteRawSocket(plan.dst_machine, plan.dst_pod.netns_path)
        except OSError as exc:   # the nudge only shortens the gap: migrate without it, and say so
            print(f"p4cf: no nudge from machine {plan.dst_machine.name!r} ({exc}); clients resume at "
                  "their next retransmission", file=sys.stderr)
    return None


def resume(staged: phases.StagedRestore, images: Path, raw: nudging.RawSender | None,
           timeout: float) -> list[nudging.ClientSeq]:
    """Open the restore's gate and wait until the backend runs at the destination; returns the
    clients' sequence numbers for the nudge, read from `images` while runc and CRIU start (the
    images are only read by both)."""
    phases.open_gate(staged, timeout)
    clients = nudging.client_connections(images) if raw is not None else []
    phases.wait_resumed(staged, timeout)
    return clients


def switch_phase(lab: LabLike, plan: MigrationPlan, record: MigrationRecord, raw: nudging.RawSender | None,
                 clients: list[nudging.ClientSeq], started: Callable[[str], None], end: End,
                 t_start: float) -> None:
    """The switch update (and the nudge), timed as the phase `switch`; the downtime ends here."""
    started("switch")
    t0 = time.monotonic()
    record.nudged = phases.switch_over(lab, plan, raw, clients)
    end(record, "switch", t0)
    record.t_end_ns = time.time_ns()
    record.total_s = time.monotonic() - t_start


def migrate_across(lab: LabLike, plan: MigrationPlan, record: MigrationRecord, *, nudge: bool,
                   started: Callable[[str], None], end: End, timeout: float) -> MigrationRecord:
    """Run the phases above; on failure roll back and raise MigrationError(phase)."""
    src_m, dst_m = plan.src_machine, plan.dst_machine
    record.machines = f"{src_m.name}->{dst_m.name}"
    raw = _raw_sender(plan) if nudge else None
    landing: _Landing | None = None
    watch: DumpWatch | None = None
    dump: subprocess.Popen[str] | None = None
    cpus: cpu_split.CpuSplit | None = None
    phase = "prepare"
    try:
        started(phase)
        t0 = time.monotonic()
        if src_m.is_local or dst_m.is_local:
            cpus = cpu_split.split(cpu_split.lab_workloads(lab.names.lab_label, lab.names.state,
                                                           plan.src_pid if src_m.is_local else 0))
        watch = DumpWatch(src_m, plan.src_pid)
        landing = _Landing(lab, plan, idle_restore=cpus is None)
        direct = any(m.transfer == "tcp" for m in (src_m, dst_m) if not m.is_local)
        stream = landing.stream = ImageStream(src_m, plan.src_images, dst_m, landing.images, direct=direct)
        record.transfer_via = "tcp" if direct else "ssh"
        end(record, phase, t0)

        phase = "checkpoint"
        started(phase)
        t_start = t0 = time.monotonic()
        record.t_start_ns = time.time_ns()
        if cpus is not None and src_m.is_local:
            cpus.join(conmon_of(plan.src_pid))
        stream.begin()               # images leave as CRIU finishes them
        dump = watch.start(plan.src_container)
        watch.wait(dump, timeout)
        end(record, phase, t0)

        phase = "transfer"
        started(phase)
        t0 = time.monotonic()
        report = stream.run(str(plan.src.ip), str(plan.dst.ip))
        record.set_transfer(report)
        end(record, phase, t0 + report.rewrite_s)

        phase = "restore"
        started(phase)
        t0 = time.monotonic()
        clients = resume(landing.staged, plan.src_images if src_m.is_local else landing.images, raw, timeout)
        end(record, phase, t0)

        phase = "switch"
        switch_phase(lab, plan, record, raw, clients, started, end, t_start)
        if cpus is not None:
            cpus.release(cpu_split.container_processes(plan.dst_container) if dst_m.is_local else ())

        phase = "cleanup"
        started(phase)
        t0 = time.monotonic()
        stream.close()
        record.criu_restore_s = landing.finish(timeout).criu_s
        record.criu_dump_s = phases.parse_stats(finish(dump, timeout).stdout, "checkpoint").criu_s
        src_m.podman("rm", "-f", "-t", "0", plan.src_container, check=False)
        release_lock(plan.src_pod.netns_path, src_m)
        end(record, phase, t0)
    except (KitError, OSError, KeyboardInterrupt) as exc:
        if cpus is not None:
            cpus.release()
        _roll_back(lab, plan, record, landing, phase, exc, dump=dump, timeout=timeout)
    finally:
        if cpus is not None:
            cpus.release()
        if watch is not None:
            watch.close()
        if raw is not None:
            raw.close()
    record.ok = True
    record.container = plan.dst_container
    return record


def _roll_back(lab: LabLike, plan: MigrationPlan, record: MigrationRecord, landing: _Landing | None,
               phase: str, exc: BaseException, *, dump: subprocess.Popen[str] | None,
               timeout: float) -> None:
    """Back to the source from its own images; MigrationError(phase) with the record attached."""
    record.fail(phase, exc)
    t0 = time.monotonic()
    src_m = plan.src_machine
    step = "restore at source"
    left = ""
    try:
        pool = lab.pool()
        if plan.dst.name in pool:
            # the switch already points at the destination: its connections moved on there,
            # so the source's older images must not come back; keep the backend where it runs.
            raise MigrationError(phase, f"{exc}; the switch already points at {plan.dst.name}, where the "
                                 "backend runs: not rolled back")
        # the source first: the backend serves again before any wait on a destination that
        # may be gone (SSH's timeouts would otherwise keep it frozen)
        if landing is not None and landing.stream is not None:
            landing.stream.abort()          # this machine's ends of the transfer: quick
            landing.stream = None
        settle(dump, timeout, drain=True)   # Podman still tidying up after CRIU
        if dump is not None or container_state(plan.src_container, src_m) != "running":
            step = "restore at source"
            clients: list[nudging.ClientSeq] = []
            if container_state(plan.src_container, src_m) != "running":
                # the clients' sequence numbers, for the nudge that ends their backoff (a long
                # cut, a dead link noticed only by SSH's keep-alive, leaves them at RTOs of seconds)
                if src_m.is_local:
                    clients = nudging.client_connections(plan.src_images)
                src_m.podman("container", "restore", "--tcp-established", plan.src_container, timeout=timeout)
            release_lock(plan.src_pod.netns_path, src_m)
            if clients:                    # after the lock: it would drop them
                with nudging.raw_socket_in(plan.src_pod.netns_path) as raw:
                    nudging.nudge(raw, clients, str(lab.config.vip))
        record.rollback_s = time.monotonic() - t0      # the backend serves again
        if landing is not None:
            step = "remove the landing container"
            try:
                landing.remove()
            except (KitError, OSError) as gone:   # the destination cannot be reached now
                left = (f"; the landing container {landing.container[:12]} stays on machine "
                        f"{landing.machine.name!r} ({gone}) until `p4cf down` or the next "
                        "migration there removes it")
        record.rolled_back = True
        outcome = f"rolled back: the backend runs at {plan.src.name} again and the switch points there{left}"
    except MigrationError:
        raise
    except (KitError, OSError) as rb:
        outcome = f"ROLLBACK FAILED at '{step}': {rb}"
    raise MigrationError(phase, f"{exc}; {outcome}", record=record) from exc
