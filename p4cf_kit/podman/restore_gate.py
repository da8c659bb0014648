"""A staged restore: Podman prepares a restore in advance, and CRIU starts when the kit says so.

Why: of a `podman container restore` (about 300 ms here), CRIU's own work is about 80 ms.
The rest is Podman and runc getting ready (CLI start, database, storage mount, spec,
conmon, runc start) and none of it needs the checkpoint images. A migration therefore
starts the destination's restore *before* it freezes the source, and lets it wait at a
gate just before runc hands the images to CRIU; when the images are in place, one line
opens the gate. The downtime keeps only runc + CRIU.

The gate lives in a kit-owned OCI runtime: a small script that is runc itself, except that
`restore` of container ID first waits for a verdict line on the FIFO GATES_DIR/ID when
that FIFO exists ("go" proceeds, anything else fails the restore). Only the kit's landing
containers are created with it (`podman create --runtime PATH`); with no FIFO it is plain
runc, so every other Podman operation on them is unchanged. A gate nobody answers times
out (GATE_TIMEOUT_S), so a crashed kit never leaves a restore hanging.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from p4cf_kit.errors import PodmanError
from p4cf_kit.paths import state_dir, write_if_changed
from p4cf_kit.podman.idle_cpu import GROUP, cpu_hierarchy
from p4cf_kit.podman.runner import podman

GATES_DIR = Path("/run/p4cf/gates")
GATE_TIMEOUT_S = 120
GO, ABORT = "go", "abort"


def _runc_path() -> str:
    return shutil.which("runc") or "/usr/bin/runc"


def render_gated_runtime(runc: str, gates_dir: Path = GATES_DIR, timeout_s: int = GATE_TIMEOUT_S,
                         idle_procs: Path | None = None) -> str:
    """The runtime script: runc, with the restore gate in front of a real restore, and the
    extra runc options a migration left for one container's checkpoint or restore in
    GATES_DIR/ID.checkpoint-args or ID.restore-args (one line; a lazy migration's
    `--lazy-pages --page-server ADDR:PORT`, see migration/lazy.py). A restore let through whose
    gate has the `.idle` side file moves into the idle cgroup `idle_procs` first (conmon starts
    runc in its own cgroup, outside the migration's: podman/idle_cpu.py)."""
    idle = (f'        [ -e "$gate.idle" ] && echo $$ > {idle_procs} 2>/dev/null\n'
            if idle_procs is not None else "")
    return f"""#!/bin/bash
# Written by P4ContainerFlow Kit (p4cf_kit.podman.restore_gate): runc with a restore gate.
# `restore ... --image-path ... ID` waits for a verdict on the FIFO {gates_dir}/ID if it exists.
# `checkpoint`/`restore` of ID get the options in {gates_dir}/ID.checkpoint-args/.restore-args.
action=
if [ "${{1:-}}" != "--help" ]; then
  case " $* " in
    *" restore "*" --image-path "*)
      action=restore
      id=${{!#}}
      gate={gates_dir}/$id
      if [ -p "$gate" ]; then
        : > "$gate.reached"
        verdict=
        read -r -t {timeout_s} verdict < "$gate" || verdict="no verdict within {timeout_s} s"
        if [ "$verdict" != "{GO}" ]; then
          echo "p4cf restore gate: restore of $id called off ($verdict)" >&2
          exit 1
        fi
{idle}      fi ;;
    *" checkpoint "*)
      action=checkpoint ;;
  esac
fi
if [ -n "$action" ] && [ -f "{gates_dir}/${{!#}}.$action-args" ]; then
  id=${{!#}}
  read -r -a extra < "{gates_dir}/$id.$action-args"
  set -- "${{@:1:$#-1}}" "${{extra[@]}}" "$id"
fi
exec {runc} "$@"
"""


def extra_args_file(container_id: str, action: str, gates_dir: Path = GATES_DIR) -> Path:
    """Where the gated runtime looks for extra runc options of `action` ("checkpoint" or
    "restore") of container `container_id` (its full ID, as Podman hands it to runc)."""
    if action not in ("checkpoint", "restore"):
        raise ValueError(f"action {action!r}: the gated runtime adds options to checkpoint or restore only")
    return gates_dir / f"{container_id}.{action}-args"


def gated_runtime_path() -> Path:
    """Write (if changed) and return the kit's gated runtime (Podman's `--runtime PATH`)."""
    cpu = cpu_hierarchy()
    procs = cpu.root / GROUP / "cgroup.procs" if cpu is not None else None
    return write_if_changed(state_dir() / "runtime" / "p4cf-runc",
                            render_gated_runtime(_runc_path(), idle_procs=procs), 0o755)


def _send_verdict(fifo: Path, verdict: str) -> bool:
    """Write `verdict` to a restore waiting on `fifo`; False when nobody reads it (yet)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENOENT):   # no reader yet / no gate
            return False
        raise
    try:
        os.write(fd, f"{verdict}\n".encode())
    finally:
        os.close(fd)
    return True


class RestoreGate:
    """The FIFO one staged restore waits on, with its side files; create before starting the
    restore. Side files, all named after the container ID:
      .owner    the lab it belongs to, so `down` can call off a restore a killed migration left
                waiting (that restore holds its container's lock: Podman could not remove it);
      .wait     asks the kit's CRIU action script (checkpoint/runc_conf.py) for .resumed,
                which it creates when CRIU resumes the restored tasks;
      .reached  made by the gated runtime as it starts waiting: Podman's preparation is over,
                so what is left of the restore is runc and CRIU;
      .idle     (with `idle`) asks the action script to run CRIU's restore at idle CPU priority
                until it resumes the tasks (podman/idle_cpu.py says why)."""

    def __init__(self, container_id: str, owner: str, gates_dir: Path = GATES_DIR,
                 idle: bool = False) -> None:
        self.path = gates_dir / container_id
        self.owner_file = gates_dir / f"{container_id}.owner"
        self.wait_marker = gates_dir / f"{container_id}.wait"
        self.resumed_marker = gates_dir / f"{container_id}.resumed"
        self.reached_marker = gates_dir / f"{container_id}.reached"
        self.idle_marker = gates_dir / f"{container_id}.idle"
        gates_dir.mkdir(parents=True, exist_ok=True)
        self.close()                                   # whatever an earlier run left
        os.mkfifo(self.path, 0o600)
        self.owner_file.write_text(owner)
        self.wait_marker.touch()
        if idle:
            self.idle_marker.touch()
        self.answered = False

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.path, self.owner_file, self.wait_marker, self.resumed_marker, self.reached_marker,
                self.idle_marker)

    def wait_reached(self, restore: subprocess.Popen[str], timeout: float = 30.0) -> None:
        """Return once the restore waits at the gate, so none of Podman's preparation is left for
        the downtime; PodmanError when the restore ended first (its error) or on timeout."""
        self._until_at_gate(self.reached_marker.exists, restore, timeout, 0.001)

    def _until_at_gate(self, done: Callable[[], bool], restore: subprocess.Popen[str], timeout: float,
                       pause: float) -> None:
        """Poll `done` until true; PodmanError when the restore ended first, or on timeout."""
        deadline = time.monotonic() + timeout
        while not done():
            if restore.poll() is not None:
                raise PodmanError(f"the staged restore ended (exit {restore.returncode}) before reaching "
                                  f"its gate: {(restore.stderr.read() if restore.stderr else '').strip()}")
            if time.monotonic() > deadline:
                raise PodmanError(f"the staged restore did not reach its gate {self.path} within {timeout:.0f} s")
            time.sleep(pause)

    def answer(self, verdict: str, restore: subprocess.Popen[str], timeout: float = 30.0) -> None:
        """Write `verdict` to the waiting restore. Waits for it to reach the gate (it may still be
        preparing); PodmanError when the restore ended before reaching it or never does."""
        self._until_at_gate(lambda: _send_verdict(self.path, verdict), restore, timeout, 0.0005)
        self.answered = True

    def wait_resumed(self, restore: subprocess.Popen[str], timeout: float = 30.0) -> bool:
        """After GO: wait until CRIU has resumed the restored tasks (the action script's marker)
        or the restore command ended; True for the marker. PodmanError on timeout."""
        deadline = time.monotonic() + timeout
        while not self.resumed_marker.exists():
            if restore.poll() is not None:
                return False
            if time.monotonic() > deadline:
                raise PodmanError(f"the restore did not resume its tasks within {timeout:.0f} s")
            time.sleep(0.0005)
        return True

    def close(self) -> None:
        """Remove the FIFO and side files (a restore reaching the gate later runs ungated: close
        only after answering, or once the restore has ended)."""
        for path in self.files:
            path.unlink(missing_ok=True)


def _container_id(gate_file: Path) -> str:
    return gate_file.name.split(".")[0]


def remove_stale_gates(gates_dir: Path = GATES_DIR) -> list[str]:
    """Remove gates whose container no longer exists (left by a killed migration)."""
    stale = []
    for path in gates_dir.glob("*") if gates_dir.is_dir() else []:
        if podman("container", "exists", _container_id(path), check=False).returncode != 0:
            path.unlink(missing_ok=True)
            stale.append(str(path))
    return stale


def abort_gates(owner: str, gates_dir: Path = GATES_DIR) -> list[str]:
    """Call off every restore of lab `owner` still waiting at its gate, and remove its gates;
    returns the container IDs. Needs no Podman call (a waiting restore holds a lock)."""
    aborted = []
    for owner_file in gates_dir.glob("*.owner") if gates_dir.is_dir() else []:
        if owner_file.read_text().strip() != owner:
            continue
        cid = _container_id(owner_file)
        _send_verdict(gates_dir / cid, ABORT)          # False: nobody waits any more
        for path in gates_dir.glob(f"{cid}*"):
            path.unlink(missing_ok=True)
        aborted.append(cid)
    return aborted
