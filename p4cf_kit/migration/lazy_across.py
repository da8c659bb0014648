"""A lazy migration whose source and destination hosts are on different machines.

What it adds to a lazy migration within one machine (lazy.py): the source's CRIU serves the
backend's pages on the source machine, the destination's `criu lazy-pages` daemon fetches them
over a TCP connection between the machines (CRIU's page-server protocol), and every other
image crosses as in a stop-and-copy migration across machines (transfer.py's stream, files.img
rewritten on the way). Both ends are started over the machines' SSH connections while the
migration prepares (lazy_pages_remote.py); nothing of the kit is installed there.

Order:
  0. prepare     the source's checkpoint is armed (runc options, a watcher for its page
                 server), the landing container staged behind the gate (with `--lazy-pages`
                 for its restore), the destination's daemon started, waiting for "go".
  1. checkpoint  CRIU dumps everything but the anonymous memory; the phase ends when its page
                 server listens (the tasks stay frozen, holding their memory).
  2. transfer    the images (without the memory) stream to the landing container's folder.
  3. restore     the daemon goes (it reads the images), the gate opens, CRIU restores and
                 hands the memory's userfaultfds to the daemon; the phase ends when the
                 backend resumes.
  4. switch      one MODIFY, and the clients nudged, as in any migration.
  5. cleanup     the restore's end, then the wait until the daemon has every page (it exits
                 0; the source's checkpoint then ends too), and only then the source container
                 (with its images) and CRIU's lock on the source pod go.

Failures, and why each ends as it does:
  - before the source is frozen: the landing container is removed; the backend never stopped.
  - after the source is frozen and before the backend resumed at the destination: its memory
    exists only behind the source's page server and cannot be put back (as within one
    machine), so both copies are removed and a FRESH server starts at the source (said so).
  - the page source dying (or the link failing) before the last page: the restored backend has
    holes that userfaultfd would fill with zeros, so it is stopped and removed at once, and a
    fresh server starts at the source: a loud failure, never a silently corrupted backend.
  - any other failure after the backend resumed at the destination: the pages are let finish,
    after which the only whole copy is the destination's, so the migration is completed
    forward (the switch pointed there, the source removed) and the error says so.
"""

from __future__ import annotations

import functools
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from p4cf_kit.children import settle
from p4cf_kit.errors import ConfigError, KitError, MigrationError, PodmanError
from p4cf_kit.machines.machine import Machine
from p4cf_kit.machines.remote import RemoteMachine
from p4cf_kit.migration import phases
from p4cf_kit.migration.across import _raw_sender, resume, switch_phase
from p4cf_kit.migration.dump_watch import CHECKPOINT
from p4cf_kit.migration.lazy import PagesLost, allow_page_pipes, await_pages, container_id_of, page_bytes_sent
from p4cf_kit.migration.lazy_pages_remote import PageDaemon, PageSource
from p4cf_kit.migration.netns_lock import release_lock
from p4cf_kit.migration.plan import BACKEND_LABEL, LOCATION_LABEL, LabLike, MigrationPlan, container_state
from p4cf_kit.migration.record import MigrationRecord
from p4cf_kit.migration.transfer import ImageStream
from p4cf_kit.podman.restore_gate import extra_args_file
from p4cf_kit.podman.runner import finish
from p4cf_kit.topology.hosts import start_server, wait_listening

End = Callable[[MigrationRecord, str, float], None]
UFFD_FEATURE = "uffd-noncoop"


@functools.cache
def _machine_has_uffd(machine: Machine) -> bool:
    return machine.run(["criu", "check", "--feature", UFFD_FEATURE], check=False).returncode == 0


def require_lazy_across(plan: MigrationPlan) -> None:
    """ConfigError before anything is made when the destination machine's kernel cannot take a
    lazy restore (this machine's was checked by modes.require)."""
    dst = plan.dst_machine
    if not dst.is_local and not _machine_has_uffd(dst):
        raise ConfigError(f"migration mode 'lazy' is refused: machine {dst.name!r} lacks userfaultfd with "
                          f"non-cooperative events (`criu check --feature {UFFD_FEATURE}` fails there); "
                          "Linux >= 4.11 with CONFIG_USERFAULTFD has it. Use --mode stop-and-copy")


def page_address(plan: MigrationPlan) -> str:
    """The source machine's address as the destination machine reaches it (its page server
    listens on every address of that machine: runc 1.1 binds 0.0.0.0 whatever it is given)."""
    if plan.src_machine.is_local:
        return plan.dst_machine.peer_address()
    return plan.src_machine.address


@dataclass
class LazyRun:
    """What a lazy migration across machines has started so far (failure handling ends it)."""

    source: PageSource | None = None
    staged: phases.StagedRestore | None = None
    daemon: PageDaemon | None = None
    stream: ImageStream | None = None
    dump: subprocess.Popen[str] | None = None
    restore_args: str = ""        # the landing's runc options file, on the destination machine
    resumed: bool = False         # the backend runs at the destination (its pages follow)
    pages_done: bool = False


def _write_restore_args(machine: Machine, container_id: str) -> str:
    path = extra_args_file(container_id, "restore")
    if machine.is_local:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("--lazy-pages\n")
    else:
        machine.run(["sh", "-c", f"mkdir -p {shlex.quote(str(path.parent))} && "
                     f"echo --lazy-pages > {shlex.quote(str(path))}"])
    return str(path)


def _start_dump(machine: Machine, container: str) -> subprocess.Popen[str]:
    if isinstance(machine, RemoteMachine):
        return machine.podman_start(*CHECKPOINT, container)
    return phases.start_checkpoint(container)


def _prepare(lab: LabLike, plan: MigrationPlan, run: LazyRun, timeout: float) -> None:
    src_m, dst_m = plan.src_machine, plan.dst_machine
    address = page_address(plan)
    allow_page_pipes(src_m)
    run.source = PageSource(src_m, container_id_of(plan.src_images), address, timeout)
    run.staged = (phases.prepare_remote(lab, plan, dst_m) if isinstance(dst_m, RemoteMachine)
                  else phases.prepare(lab, plan))
    run.restore_args = _write_restore_args(dst_m, run.staged.container_id)
    run.daemon = PageDaemon(dst_m, run.staged.images, address, run.source.port, timeout)
    direct = "tcp" in (src_m.transfer, dst_m.transfer)
    run.stream = ImageStream(src_m, plan.src_images, dst_m, run.staged.images, direct=direct)


def wait_pages(plan: MigrationPlan, run: LazyRun, timeout: float) -> None:
    """Return once the daemon has every page (it exits 0). When the page source dies first (the
    daemon fails, or the source's checkpoint does), stop the restored backend at once (its
    memory has holes) and raise PagesLost with the daemon's log."""
    assert run.daemon is not None and run.staged is not None
    source = run.source
    code, why = await_pages(run.daemon.poll, run.dump, timeout, f" on machine {plan.dst_machine.name!r}",
                            f" on machine {plan.src_machine.name!r}",
                            moved=(lambda: page_bytes_sent(source.port, plan.src_machine)) if source else None)
    if code == 0:
        run.pages_done = True
        return
    tail = run.daemon.log_tail()
    run.daemon.stop()
    plan.dst_machine.podman("kill", "--signal", "KILL", run.staged.container_id, check=False)
    raise PagesLost("cleanup", f"lazy migration: the page transfer from {plan.src.name} (machine "
                               f"{plan.src_machine.name!r}) failed ({why}); the restored backend at "
                               f"{plan.dst.name} (machine {plan.dst_machine.name!r}) was stopped because "
                               f"its memory is incomplete. Daemon log ({run.daemon.log}):\n{tail}")


def migrate_lazy_across(lab: LabLike, plan: MigrationPlan, record: MigrationRecord, *, nudge: bool,
                        started: Callable[[str], None], end: End, timeout: float) -> MigrationRecord:
    """Run the phases above; on failure end as described there and raise MigrationError(phase)."""
    src_m, dst_m = plan.src_machine, plan.dst_machine
    require_lazy_across(plan)
    record.machines = f"{src_m.name}->{dst_m.name}"
    raw = _raw_sender(plan) if nudge else None
    run = LazyRun()
    phase = "prepare"
    try:
        started(phase)
        t0 = time.monotonic()
        _prepare(lab, plan, run, timeout)
        assert run.source is not None and run.staged is not None and run.daemon is not None
        assert run.stream is not None
        record.transfer_via = "tcp" if "tcp" in (src_m.transfer, dst_m.transfer) else "ssh"
        end(record, phase, t0)

        phase = "checkpoint"
        started(phase)
        t_start = t0 = time.monotonic()
        record.t_start_ns = time.time_ns()
        run.dump = _start_dump(src_m, plan.src_container)
        run.source.wait_serving(run.dump, timeout)
        end(record, phase, t0)

        phase = "transfer"
        started(phase)
        t0 = time.monotonic()
        report = run.stream.run(str(plan.src.ip), str(plan.dst.ip))
        record.set_transfer(report)
        end(record, phase, t0 + report.rewrite_s)

        phase = "restore"
        started(phase)
        t0 = time.monotonic()
        run.daemon.go(timeout)
        clients = resume(run.staged, plan.src_images if src_m.is_local else run.staged.images, raw, timeout)
        run.resumed = True
        end(record, phase, t0)

        phase = "switch"
        switch_phase(lab, plan, record, raw, clients, started, end, t_start)

        phase = "cleanup"
        started(phase)
        t0 = time.monotonic()
        record.criu_restore_s = phases.finish_restore(run.staged, timeout).criu_s
        wait_pages(plan, run, timeout)
        record.pages_done_s = (time.time_ns() - record.t_end_ns) / 1e9
        _retire_source(plan, run, timeout)
        end(record, phase, t0)
    except PagesLost as exc:
        _restart(lab, plan, run, record, phase, exc, timeout)
    except (KitError, OSError, KeyboardInterrupt) as exc:
        _fail(lab, plan, run, record, phase, exc, timeout)
    finally:
        _close(plan, run)
        if raw is not None:
            raw.close()
    record.ok = True
    record.container = plan.dst_container
    return record


def _retire_source(plan: MigrationPlan, run: LazyRun, timeout: float) -> None:
    """Every page is at the destination: the source's checkpoint ends (its CRIU stops the frozen
    tasks), then its container (and with it its images) goes, then CRIU's lock on its pod."""
    if run.dump is not None:
        # its statistics do not time a lazy freeze (unused); a failure after the last page was
        # served (its CRIU stopped before it ended the frozen tasks) leaves nothing to keep there
        try:
            finish(run.dump, timeout)
        except KitError:
            pass
        run.dump = None
    plan.src_machine.podman("rm", "-f", "-t", "0", plan.src_container, check=False)
    release_lock(plan.src_pod.netns_path, plan.src_machine)


def _stop_transfer(run: LazyRun, end_source: Callable[[PageSource], object]) -> None:
    """End the page source (as `end_source` says: closed after a success, stopped when the
    memory is lost), the destination's daemon and the image stream."""
    if run.source is not None:
        end_source(run.source)
    if run.daemon is not None:
        run.daemon.stop()
    if run.stream is not None:
        run.stream.abort()


def _close(plan: MigrationPlan, run: LazyRun) -> None:
    """End this migration's helpers and remove its runc options files; never raises."""
    _stop_transfer(run, lambda source: source.close())
    if run.restore_args:
        try:
            plan.dst_machine.run(["rm", "-f", run.restore_args], check=False)
        except Exception:  # noqa: BLE001 - `p4cf down` removes the gates folder's files later
            pass
    if run.staged is not None:
        run.staged.gate.close()


def _fail(lab: LabLike, plan: MigrationPlan, run: LazyRun, record: MigrationRecord, phase: str,
          exc: BaseException, timeout: float) -> NoReturn:
    """Choose the end that keeps the most of the backend (see the module's docstring)."""
    if run.resumed:
        _roll_forward(lab, plan, run, record, phase, exc, timeout)
    if run.dump is not None:
        # a checkpoint still running holds the container's lock in Podman (an inspect would wait
        # for it): its page server is stopped first, in _restart
        serving = run.source is not None and run.source.serving
        if serving or run.dump.poll() is None or \
                container_state(plan.src_container, plan.src_machine) != "running":
            _restart(lab, plan, run, record, phase, exc, timeout)
    record.fail(phase, exc)
    left = ""
    try:
        if run.dump is not None:
            finish(run.dump, timeout)
            run.dump = None
    except KitError:
        pass                                # a failed dump left the backend running: it serves
    if run.staged is not None:
        left = _remove_landing(plan, run)
    release_lock(plan.src_pod.netns_path, plan.src_machine)
    record.rolled_back = True
    raise MigrationError(phase, f"{exc}; rolled back: the backend never stopped at {plan.src.name} and the "
                                f"switch points there{left}", record=record) from exc


def _remove_landing(plan: MigrationPlan, run: LazyRun) -> str:
    """Remove the landing container (staged, or restored and stopped); a note when it must stay."""
    assert run.staged is not None
    dst_m = plan.dst_machine
    if isinstance(dst_m, RemoteMachine) and not dst_m.answers():
        if run.staged.process.poll() is None:
            run.staged.process.kill()
        run.staged.process.wait()
        return (f"; the landing container {run.staged.container_id[:12]} stays on machine {dst_m.name!r} "
                "(it does not answer) until `p4cf down` or the next migration there removes it")
    phases.abort(run.staged)
    dst_m.podman("rm", "-f", "-t", "0", run.staged.container_id, check=False)
    if isinstance(dst_m, RemoteMachine):
        phases.forget_in_storage(dst_m, run.staged.container_id)
    return ""


def _restart(lab: LabLike, plan: MigrationPlan, run: LazyRun, record: MigrationRecord, phase: str,
             exc: BaseException, timeout: float) -> NoReturn:
    """The backend's memory is lost (or held only by a source that cannot give it back): remove
    both copies and every CRIU lock, start a fresh server at the source, point the switch there,
    and raise MigrationError saying that its memory and connections were lost."""
    record.fail(phase, exc)
    t0 = time.monotonic()
    src_m, dst_m = plan.src_machine, plan.dst_machine
    step = "stop the page transfer"
    try:
        _stop_transfer(run, lambda source: source.stop())
        step = "end the checkpoint"
        settle(run.dump, timeout, drain=True)
        run.dump = None
        step = "remove the landing container"
        left = _remove_landing(plan, run) if run.staged is not None else ""
        step = "remove the source container"
        src_m.podman("rm", "-f", "-t", "0", plan.src_container, check=False)
        release_lock(plan.src_pod.netns_path, src_m)
        if not left:
            release_lock(plan.dst_pod.netns_path, dst_m)
        step = "start a fresh server at the source"
        start_server(lab.config, lab.names, plan.src, machine=src_m, backend=plan.backend,
                     labels={LOCATION_LABEL: plan.src.name, BACKEND_LABEL: plan.backend})
        wait_listening(plan.src_pod.netns_path, lab.config.port, plan.src_container, timeout=timeout,
                       machine=src_m)
        step = "switch back to source"
        if plan.dst.name in lab.pool():
            phases.point_switch_back(lab, str(plan.dst.ip), plan.src_hop)
        record.rollback_s = time.monotonic() - t0
        record.rolled_back = True
        outcome = (f"its memory was lost with the page source, so a FRESH server runs at {plan.src.name} "
                   f"(backend {plan.backend}, its connections closed) and the switch points there{left}")
    except (KitError, OSError) as rb:
        outcome = f"RESTART FAILED at '{step}': {rb}"
    raise MigrationError(phase, f"{exc}; {outcome}", record=record) from exc


def _roll_forward(lab: LabLike, plan: MigrationPlan, run: LazyRun, record: MigrationRecord, phase: str,
                  exc: BaseException, timeout: float) -> NoReturn:
    """The backend already runs at the destination: once its pages are all there, that is the only
    whole copy (the source's CRIU stops the source's tasks after its last page), so the migration
    is completed forward and the error says so; a page source dying meanwhile restarts it fresh."""
    record.fail(phase, exc)
    try:
        if run.staged is not None:
            try:
                run.staged.complete(timeout)
            except PodmanError:
                pass                        # its verdict is not needed: the backend runs
        if not run.pages_done:
            wait_pages(plan, run, timeout)
        if plan.dst.name not in lab.pool():
            phases.point_switch_back(lab, str(plan.src.ip), plan.dst_hop)
        _retire_source(plan, run, timeout)
    except PagesLost as lost:
        _restart(lab, plan, run, record, phase, lost, timeout)
    except (KitError, OSError) as rf:
        raise MigrationError(phase, f"{exc}; COMPLETING AT {plan.dst.name} FAILED: {rf}", record=record) from exc
    raise MigrationError(phase, f"{exc}; not rolled back: the backend already ran at {plan.dst.name} with its "
                                f"pages following, so the migration was completed there (every page arrived, "
                                f"the switch points there, the source was removed)", record=record) from exc
