"""The two ends of a lazy migration's page transfer, on whichever machine each runs.

Why a module apart from lazy.py: within one machine the kit reads /proc and starts CRIU
itself; across machines one end (or both) is on a machine reached only over SSH, where
nothing of the kit is installed. So each end is a short program started over that machine's
SSH connection while the migration prepares (not in the downtime), talking on its stdin and
stdout, as the remote restore gate's keeper does (podman/remote_gate.py):
  - `PageSource`: on the source machine, the runc option that makes the checkpoint serve its
    pages (`--lazy-pages --page-server ADDR:PORT`, through the gated runtime's per-container
    option file), and a watcher that says when CRIU's page server listens, i.e. when every
    image but the memory is written;
  - `PageDaemon`: on the destination machine, a shell that waits for the kit's "go" and then
    becomes `criu lazy-pages --page-server`, which fetches the pages from the source over the
    machines' link (first those the restored process faults on, then the rest) and exits 0
    once it has them all. Its status byte comes back on the session's stdout.
The page traffic itself is CRIU's own protocol over a TCP connection between the machines:
it carries no authentication, so it belongs on a testbed's own link, like `transfer = "tcp"`.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import signal
import subprocess
import time
from pathlib import Path

from p4cf_kit.checkpoint.criu import find_criu
from p4cf_kit.children import settle
from p4cf_kit.errors import PodmanError
from p4cf_kit.machines.machine import Machine
from p4cf_kit.migration import lazy
from p4cf_kit.podman.restore_gate import extra_args_file

DAEMON_LOG = lazy.DAEMON_LOG

# The source machine's watcher: pick a free port, write the checkpoint's runc options for the
# container, print "port N", then print "listening" once CRIU's page server listens on it (or
# end when the kit closes stdin). argv: options file, address.
SOURCE_WATCHER = r"""
import os, select, socket, sys
args_file, address = sys.argv[1], sys.argv[2]
s = socket.socket(); s.bind(("", 0)); port = s.getsockname()[1]; s.close()
os.makedirs(os.path.dirname(args_file), exist_ok=True)
with open(args_file, "w") as f:
    f.write("--lazy-pages --page-server %s:%d\n" % (address, port))
print("port", port, flush=True)
suffix = ":%04X" % port
while True:
    with open("/proc/net/tcp") as table:
        for line in table.read().splitlines()[1:]:
            cols = line.split()
            if len(cols) > 3 and cols[1].endswith(suffix) and cols[3] == "0A":
                print("listening", flush=True)
                sys.exit(0)
    if select.select([sys.stdin], [], [], 0.001)[0]:
        print("called off", flush=True)
        sys.exit(0)
"""


def _read_line(proc: subprocess.Popen[bytes], timeout: float, what: str) -> str:
    """One line of a helper program's stdout; PodmanError when it ends or stays silent."""
    assert proc.stdout is not None
    if not select.select([proc.stdout], [], [], timeout)[0]:
        raise PodmanError(f"{what}: no answer within {timeout:.0f} s")
    line = proc.stdout.readline().decode(errors="replace").strip()
    if not line:
        err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        raise PodmanError(f"{what}: it ended (exit {proc.wait()}) {err}".strip())
    return line


class PageSource:
    """The source machine's end: its checkpoint serves the pages on `port` at `address`."""

    def __init__(self, machine: Machine, container_id: str, address: str, timeout: float) -> None:
        self.machine, self.container_id, self.address = machine, container_id, address
        self.args_file = extra_args_file(container_id, "checkpoint")
        self.serving = False          # the source's CRIU holds the memory and serves it
        self._watcher: subprocess.Popen[bytes] | None = None
        if machine.is_local:
            self.port = lazy.free_port()
            self.args_file.parent.mkdir(parents=True, exist_ok=True)
            self.args_file.write_text(f"--lazy-pages --page-server {address}:{self.port}\n")
            return
        self._watcher = machine.popen(["python3", "-c", SOURCE_WATCHER, str(self.args_file), address],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        first = _read_line(self._watcher, timeout, f"machine {machine.name!r}: the page source's watcher")
        if not first.startswith("port "):
            settle(self._watcher)
            raise PodmanError(f"machine {machine.name!r}: the page source's watcher said {first!r}")
        self.port = int(first.split()[1])

    def wait_serving(self, dump: subprocess.Popen[str], timeout: float) -> None:
        """Return once the images are written and the page server listens; PodmanError when the
        checkpoint command ends first (its own error when it failed)."""
        deadline = time.monotonic() + timeout
        while True:
            if self._listening():
                self.serving = True
                return
            if dump.poll() is not None:
                out, err = dump.communicate()
                raise PodmanError(f"machine {self.machine.name!r}: the lazy checkpoint ended (exit "
                                  f"{dump.returncode}) without serving its pages on port {self.port}: "
                                  f"{(err or out or '').strip()}")
            if time.monotonic() > deadline:
                raise PodmanError(f"machine {self.machine.name!r}: the lazy checkpoint did not open its page "
                                  f"server on port {self.port} within {timeout:.0f} s")

    def _listening(self) -> bool:
        if self._watcher is None:
            found = lazy.listening(self.port)
            if not found:
                time.sleep(0.0005)
            return found
        assert self._watcher.stdout is not None
        if not select.select([self._watcher.stdout], [], [], 0.002)[0]:
            return False
        word = self._watcher.stdout.readline().decode().strip()
        if word != "listening":
            raise PodmanError(f"machine {self.machine.name!r}: the page source's watcher ended ({word!r})")
        return True

    def pids(self) -> list[int]:
        """Pids of the CRIU process serving the pages (the owners of its port's sockets)."""
        if self.machine.is_local:
            return lazy.socket_owners(self.port)
        out = self.machine.run(["ss", "-Htanp", f"sport = :{self.port}"], check=False).stdout
        return sorted({int(pid) for pid in re.findall(r"pid=(\d+)", out)})

    def stop(self) -> list[int]:
        """Stop the page server (by pid), so the source's checkpoint command ends; returns the pids
        stopped. Never raises."""
        try:
            pids = self.pids()
            if not pids:
                return []
            if not self.machine.is_local:
                self.machine.run(["kill", "-9", *map(str, pids)], check=False)
                return pids
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return pids
        except Exception:  # noqa: BLE001 - an unreachable machine: its checkpoint ends with its session
            return []

    def close(self) -> None:
        """End the watcher and remove the runc options file; never raises."""
        settle(self._watcher)
        self._watcher = None
        if self.machine.is_local:
            self.args_file.unlink(missing_ok=True)
            return
        try:
            self.machine.run(["rm", "-f", str(self.args_file)], check=False)
        except Exception:  # noqa: BLE001 - `p4cf down` removes the gates folder's files later
            pass


def _daemon_script(criu: str, images: Path, address: str, port: int) -> str:
    """The destination's shell: say its pid, wait for "go", then become the lazy-pages daemon
    with its status byte on stdout (the session's pipe back to the kit)."""
    work = images.parent
    cmd = [criu, "lazy-pages", "--page-server", "--address", address, "--port", str(port),
           "--images-dir", str(images), "--work-dir", str(work), "--log-file", DAEMON_LOG, "-v2",
           "--status-fd", "1"]
    return ("echo pid $$\n"
            'read -r verdict || exit 5\n[ "$verdict" = go ] || exit 6\n'
            f"cd {shlex.quote(str(work))} || exit 7\n"
            f"exec {shlex.join(cmd)} 2>/dev/null\n")


class PageDaemon:
    """The destination machine's `criu lazy-pages`, started in prepare, let go once the images
    are in place (it reads them as it starts)."""

    def __init__(self, machine: Machine, images: Path, source_address: str, port: int,
                 timeout: float) -> None:
        self.machine, self.images = machine, images
        self.log = images.parent / DAEMON_LOG
        criu = find_criu() if machine.is_local else "criu"
        self.proc = machine.popen(["sh", "-c", _daemon_script(criu, images, source_address, port)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        first = _read_line(self.proc, timeout, f"machine {machine.name!r}: the lazy-pages daemon's shell")
        self.pid = int(first.split()[1]) if first.startswith("pid ") else 0
        self.started = False

    def go(self, timeout: float) -> None:
        """Start the daemon and wait until it is ready for the restore; PodmanError with its log
        when it is not."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(b"go\n")
            self.proc.stdin.flush()
        except BrokenPipeError as exc:
            raise PodmanError(f"machine {self.machine.name!r}: the lazy-pages daemon's shell is gone "
                              f"(exit {self.proc.wait()})") from exc
        self.started = True
        ready = select.select([self.proc.stdout], [], [], timeout)[0]
        status = os.read(self.proc.stdout.fileno(), 1) if ready else b""
        if status != b"\0":
            self.stop()
            raise PodmanError(f"machine {self.machine.name!r}: the lazy-pages daemon did not get ready within "
                              f"{timeout:.0f} s; its log ({self.log}) ends with:\n{self.log_tail()}")

    def poll(self) -> int | None:
        """The daemon's exit status once it ended (0: every page reached the restored process)."""
        return self.proc.poll()

    def log_tail(self) -> str:
        if self.machine.is_local:
            return lazy.log_tail(self.log)
        try:
            return self.machine.run(["tail", "-n", str(lazy.LOG_TAIL_LINES), str(self.log)],
                                    check=False).stdout.strip()
        except Exception:  # noqa: BLE001 - the machine does not answer: no log to show
            return "(the machine did not answer)"

    def stop(self) -> None:
        """Stop the daemon (by the pid its shell said) and its session; never raises."""
        if self.proc.poll() is None and self.pid:
            try:
                if self.machine.is_local:
                    os.kill(self.pid, signal.SIGKILL)
                else:
                    self.machine.run(["kill", "-9", str(self.pid)], check=False)
            except (ProcessLookupError, Exception):  # noqa: BLE001 - gone, or its machine is
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
