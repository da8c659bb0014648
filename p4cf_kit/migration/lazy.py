"""Lazy migration: the backend runs at the destination before its memory has arrived.

How (CRIU's lazy migration, userfaultfd): Podman does not offer it, so the kit hands runc
the options itself, through its gated runtime (podman/restore_gate.py reads one line of
extra runc options per container and action):
  - the source's `runc checkpoint --lazy-pages --page-server 127.0.0.1:PORT`: CRIU writes
    every image but the anonymous memory, then keeps the frozen tasks and serves their pages
    on PORT. Its `podman container checkpoint` only ends once every page has been sent.
  - the destination's `criu lazy-pages --page-server` daemon (started by the kit once the
    images are in place), which asks that port for pages: first those the restored process
    faults on, then all the rest in the background.
  - the destination's `runc restore --lazy-pages`: CRIU restores everything but the memory,
    hands the memory's userfaultfds to the daemon and resumes the tasks at once. The staged
    restore's gate (phases.prepare/open_gate) is unchanged.

Why the order of the end matters: the source container may be removed only once the daemon
has fetched every page (it then exits 0, and the source's dump ends). A page source that dies
before that leaves the restored process with holes that userfaultfd would fill with zeros,
so the kit stops that backend and fails the migration loudly (MigrationError, phase cleanup)
instead of leaving a silently corrupted backend.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from p4cf_kit.checkpoint.criu import find_criu
from p4cf_kit.errors import MigrationError, PodmanError
from p4cf_kit.machines.machine import LOCAL, Machine
from p4cf_kit.migration import phases
from p4cf_kit.migration.plan import MigrationPlan
from p4cf_kit.podman.restore_gate import extra_args_file
from p4cf_kit.podman.runner import podman

ADDRESS = "127.0.0.1"
DAEMON_LOG = "lazy-pages.log"
LOG_TAIL_LINES = 12
LISTEN = "0A"                     # TCP_LISTEN in /proc/net/tcp
PROGRESS_PROBE_S = 1.0            # how often the wait for the last page reads the bytes sent


class PagesLost(MigrationError):
    """The page source died before every page reached the restored backend: that backend was
    stopped (its memory has holes) and the source is gone, so there is nothing to roll back to."""


def free_port() -> int:
    """A TCP port free on the loopback now (the source's CRIU binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((ADDRESS, 0))
        port: int = sock.getsockname()[1]
        return port


def listening(port: int, table: Path = Path("/proc/net/tcp")) -> bool:
    """True when something listens on TCP `port` of this network namespace, on any IPv4
    address (runc 1.1 has CRIU's lazy page server bind 0.0.0.0 whatever address it is given).
    Read from the kernel's table: a probing connect would be taken by CRIU's one-client server."""
    suffix = f":{port:04X}"
    for line in table.read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[1].endswith(suffix) and fields[3] == LISTEN:
            return True
    return False


def container_id_of(images: Path) -> str:
    """The full container ID of a checkpoint folder (Podman's .../<id>/userdata/checkpoint)."""
    return images.parent.parent.name


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a CRIU log, for error messages ("" when there is none)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def socket_owners(port: int, table: Path = Path("/proc/net/tcp")) -> list[int]:
    """Pids holding a TCP socket whose local port is `port` in this network namespace (CRIU's
    page server: listening, or serving its one client)."""
    suffix = f":{port:04X}"
    inodes = {f"socket:[{fields[9]}]" for fields in (line.split() for line in table.read_text().splitlines()[1:])
              if len(fields) > 9 and fields[1].endswith(suffix)}
    pids: list[int] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def page_bytes_sent(port: int, machine: Machine = LOCAL) -> int | None:
    """Bytes the page server on `port` of `machine` has had acknowledged so far (`ss -ti`'s
    bytes_acked on its connections); None when they cannot be read. Asked over SSH like every
    other command on another machine: the kit watches the transfer from where it sends."""
    cmd = ["ss", "-Htin", "state", "established", f"( sport = :{port} )"]
    try:
        out = machine.run(cmd, check=False, timeout=10).stdout
    except Exception:  # noqa: BLE001 - a machine that does not answer: no reading, the wait goes on
        return None
    acked = re.findall(r"bytes_acked:(\d+)", out)
    return sum(int(n) for n in acked) if acked else None


def await_pages(daemon_poll: Callable[[], int | None], dump: subprocess.Popen[str] | None, idle_s: float,
                daemon_where: str = "", source_where: str = "",
                moved: Callable[[], int | None] | None = None) -> tuple[int | None, str]:
    """Wait until the lazy-pages daemon exits (0: every page reached the backend), its page source's
    checkpoint fails, or no page has moved for `idle_s`; returns the daemon's exit status (None
    when it still runs) and why the wait ended. `moved` reads the bytes the source has sent
    (page_bytes_sent), every PROGRESS_PROBE_S: a large memory over a slow link takes as long as
    it takes while it moves, and a stalled one is given up `idle_s` after its last byte (without
    `moved`, `idle_s` after the start). `daemon_where`/`source_where` name the machines."""
    now = time.monotonic()
    quiet_since, next_probe, sent = now, now + PROGRESS_PROBE_S, None
    while True:
        code = daemon_poll()
        if code is not None:
            return code, f"the lazy-pages daemon{daemon_where} exited with status {code}"
        if dump is not None and dump.poll() not in (None, 0):
            return None, (f"the source's checkpoint (the page server{source_where}) ended with status "
                          f"{dump.returncode}")
        now = time.monotonic()
        if moved is not None and now >= next_probe:
            reading = moved()
            next_probe = time.monotonic() + PROGRESS_PROBE_S
            if reading is not None and reading != sent:
                quiet_since, sent = now, reading
        if now - quiet_since > idle_s:
            progress = f" ({sent / 1e6:.1f} MB of pages had been sent)" if sent is not None else ""
            return None, (f"the lazy-pages daemon had not fetched every page, and none moved for "
                          f"{idle_s:g} s{progress}")
        time.sleep(0.005)


PIPE_MAX_SIZE = 4 << 20   # bytes: above the 3.2 MiB pipe CRIU's page server asks for


def allow_page_pipes(machine: Machine) -> None:
    """Let CRIU's page server on `machine` have its pipes. It grows one to 819 pages (3.2 MiB:
    PIPE_MAX_SIZE in CRIU's page-pipe.h) past the kernel's default fs.pipe-max-size (1 MiB),
    which only CAP_SYS_RESOURCE may exceed. Where root lacks that capability (seen on a VM of
    ours: CapEff without bit 24), the page server failed at the lazy-pages daemon's first
    request ("page-pipe: splice: -1: Bad file descriptor") and every lazy migration with it.
    So the limit is raised to 4 MiB there when it is lower; nothing else changes."""
    machine.sysctl_raise("/proc/sys/fs/pipe-max-size", PIPE_MAX_SIZE)


@dataclass
class LazyTransfer:
    """One lazy migration's memory path: source page server, destination daemon, their ends."""

    plan: MigrationPlan
    port: int = field(default_factory=free_port)
    daemon: subprocess.Popen[bytes] | None = None
    daemon_log: Path | None = None
    files: list[Path] = field(default_factory=list)
    serving: bool = False         # the source's CRIU holds its memory and serves it on `port`
    pages_done: bool = False      # ... and every page has reached the destination

    @property
    def source_id(self) -> str:
        return container_id_of(self.plan.src_images)

    def _write_args(self, container_id: str, action: str, args: str) -> None:
        path = extra_args_file(container_id, action)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(args + "\n")
        self.files.append(path)

    def arm(self) -> None:
        """Before anything runs: the source's next checkpoint serves its pages on `port`."""
        allow_page_pipes(LOCAL)
        self._write_args(self.source_id, "checkpoint", f"--lazy-pages --page-server {ADDRESS}:{self.port}")

    def staged(self, staged: phases.StagedRestore) -> None:
        """After prepare: the landing container's restore takes its memory lazily. The restore
        reads the file only when its gate opens, so writing it now is in time."""
        self._write_args(staged.container_id, "restore", "--lazy-pages")

    def wait_dumped(self, dump: subprocess.Popen[str], timeout: float) -> None:
        """Return once the source's images are written and its page server listens (CRIU
        opens the port after the last image is flushed); PodmanError when the checkpoint
        command fails first."""
        deadline = time.monotonic() + timeout
        while not listening(self.port):
            if dump.poll() is not None:
                phases.finish_checkpoint(dump, timeout=1)   # raises when it failed
                raise PodmanError("the lazy checkpoint ended without serving its pages "
                                  f"(no page server on {ADDRESS}:{self.port}); is runc's --lazy-pages supported?")
            if time.monotonic() > deadline:
                raise PodmanError(f"the lazy checkpoint did not open its page server on {ADDRESS}:{self.port} "
                                  f"within {timeout:.0f} s")
            time.sleep(0.0005)
        self.serving = True

    def source_held(self) -> bool:
        """True while the backend's memory exists only behind the source's page server: a failed
        migration can then not put the old backend back (Podman holds the source container
        until its checkpoint ends) and restarts it fresh (migration/rollback.py)."""
        return self.serving and not self.pages_done

    def serve(self, staged: phases.StagedRestore, timeout: float) -> None:
        """Once the images are in the landing folder: start the lazy-pages daemon there (in the
        restore's work folder, where the restore looks for its socket) and wait until it is ready."""
        work = staged.images.parent
        self.daemon_log = work / DAEMON_LOG
        read_end, write_end = os.pipe()
        try:
            self.daemon = subprocess.Popen(
                [find_criu(), "lazy-pages", "--page-server", "--address", ADDRESS, "--port", str(self.port),
                 "--images-dir", str(staged.images), "--work-dir", str(work), "--log-file", DAEMON_LOG,
                 "-v2", "--status-fd", str(write_end)],
                pass_fds=(write_end,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
            os.close(write_end)
            write_end = -1
            ready, _, _ = select.select([read_end], [], [], timeout)
            status = os.read(read_end, 1) if ready else b""
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
        if status != b"\0":
            self._stop_daemon()
            raise PodmanError(f"the lazy-pages daemon did not get ready within {timeout:.0f} s; "
                              f"its log ({self.daemon_log}) ends with:\n{log_tail(self.daemon_log)}")

    def complete(self, staged: phases.StagedRestore, dump: subprocess.Popen[str] | None,
                 timeout: float) -> None:
        """Wait until every page has reached the restored backend (the daemon exits 0). When the
        page source dies first (its checkpoint command fails, or the daemon does), stop the
        restored backend (its memory has holes) and raise PagesLost."""
        assert self.daemon is not None, "serve() starts the daemon before the restore"
        code, why = await_pages(self.daemon.poll, dump, timeout, moved=lambda: page_bytes_sent(self.port))
        if code == 0:
            self.pages_done = True
            return
        self._stop_daemon()
        podman("kill", "--signal", "KILL", staged.container_id, check=False)
        raise PagesLost("cleanup", f"lazy migration: the page transfer from {self.plan.src.name} failed "
                                   f"({why}); the restored backend at {self.plan.dst.name} was stopped "
                                   f"because its memory is incomplete. Daemon log ({self.daemon_log}):\n"
                                   f"{log_tail(self.daemon_log) if self.daemon_log else ''}")

    def page_server_pids(self) -> list[int]:
        """Pids of the source's CRIU serving pages on `port` (the socket's owners, from /proc)."""
        return socket_owners(self.port)

    def stop_source(self) -> None:
        """Stop the source's page server (by pid), so its checkpoint command ends and the source
        container can be removed; used when the migration cannot complete. Never raises."""
        for pid in self.page_server_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _stop_daemon(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGKILL)
            self.daemon.wait()

    def close(self) -> None:
        """Remove the per-container runc options and stop a daemon still running; never raises."""
        self._stop_daemon()
        for path in self.files:
            path.unlink(missing_ok=True)
