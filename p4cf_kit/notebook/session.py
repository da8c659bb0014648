"""The notebook's lab: attach to a running one, or bring it up and make sure it goes down.

Why not `with Lab(...)` in a cell: a notebook spans many cells, and a cell that fails
would leave the lab up. `open_lab` registers the teardown outside the cells: closing
the session (or losing it) runs `lab.down()`, and when the kernel exits with the lab
still up (after a failed cell, or "Shut Down Kernel") an exit hook starts
`p4cf down --lab NAME` in its own session, because a kernel manager kills a kernel
that takes more than a few seconds to exit, which would cut an in-process teardown
short. A lab that was already running (the demo and the tests bring one up for
several notebooks) is attached to, never torn down: a session only removes what it
started. Client traffic started with `LabSession.live_traffic` runs until stopped, so panels
stay live after Run All; it stops when the session closes, and at kernel exit also in a lab
the session only attached to (a detached `podman rm`, like the teardown above). The config
comes from `$P4CF_CONFIG` (a .toml/.yaml path), else the packaged classic lab.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from p4cf_kit.config import LabConfig, load_config, with_workload

if TYPE_CHECKING:
    from p4cf_kit.lab import Lab
    from p4cf_kit.topology.traffic import TrafficRun

ENV_CONFIG = "P4CF_CONFIG"


def notebook_config() -> LabConfig:
    """The lab the notebooks use: `$P4CF_CONFIG` when set, else the packaged default."""
    return load_config(os.environ.get(ENV_CONFIG) or None)


def lab_is_up(config: LabConfig) -> bool:
    """True when the switch of lab `config.name` runs (someone brought it up), whichever target."""
    from p4cf_kit.switch.targets import switch_up
    from p4cf_kit.topology.names import LabNames
    return switch_up(LabNames(config.name).state)


def _teardown(lab: Lab) -> None:
    try:
        lab.down()
    except Exception as exc:  # at exit nobody can act on a traceback; say what to run instead
        print(f"p4cf: tearing down lab {lab.config.name!r} failed ({exc}); run `p4cf down --lab {lab.config.name}`")


def _teardown_detached(name: str) -> None:
    """Start `p4cf down --lab name` outside this process group, so it outlives a killed kernel."""
    from p4cf_kit.paths import state_dir
    log = open(state_dir() / f"teardown-{name}.log", "ab")
    subprocess.Popen([sys.executable, "-m", "p4cf_kit", "down", "--lab", name], stdin=subprocess.DEVNULL,
                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    log.close()


def _teardown_at_exit(finalizer: weakref.finalize[[Any], LabSession], name: str) -> None:
    if finalizer.detach() is not None:  # still up: the interpreter is going away (runs once)
        _teardown_detached(name)


def lab_leftovers(config: LabConfig) -> list[str]:
    """Names of Podman containers and pods of lab `config.name` still present (plus "switch" if it runs)."""
    from p4cf_kit.podman.runner import podman
    from p4cf_kit.topology.names import LabNames
    label = LabNames(config.name).lab_label
    names = []
    for kind in (["ps", "-a"], ["pod", "ps"]):
        out = podman(*kind, "--filter", f"label={label}", "--format", "{{.Names}}", check=False).stdout
        names += [n for n in out.split() if n]
    return (["switch"] if lab_is_up(config) else []) + names


def wait_lab_gone(config: LabConfig, timeout: float = 90.0) -> bool:
    """Wait for a teardown running elsewhere (e.g. a detached one) to finish; True when nothing is left."""
    deadline = time.monotonic() + timeout
    while lab_leftovers(config):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _remove_detached(container: str) -> None:
    """Remove a container from outside this process group (at kernel exit, which may be cut short)."""
    from p4cf_kit.podman.conf import podman_env
    from p4cf_kit.podman.runner import podman_binary
    subprocess.Popen([podman_binary(), "rm", "-f", "-t", "0", container], env=podman_env(),
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True)


def _stop_traffic_at_exit(session_ref: weakref.ref[LabSession]) -> None:
    session = session_ref()
    if session is not None and not session.closed and session.live is not None:
        _remove_detached(session.live.container)


@dataclass
class LabSession:
    """A lab used by one notebook; `started` says whether closing it tears the lab down."""

    lab: Lab
    started: bool
    up_s: float = 0.0
    #: Client traffic started with `live_traffic` (runs until stopped): stopped with the session.
    live: TrafficRun | None = None
    closed: bool = False
    _exit_hook: bool = field(default=False, repr=False)
    _finalizer: weakref.finalize[[Any], LabSession] | None = field(default=None, repr=False)

    def live_traffic(self, connections: int = 16, rate: float = 50.0, **options: Any) -> TrafficRun:
        """Client traffic that runs until stopped (a TrafficRun), for the panels to follow after Run
        All. It is stopped when the session closes, and when the kernel exits also in a lab this
        notebook only attached to (a lab it brought up is torn down as a whole)."""
        if self.live is not None:
            self.live.stop()
        live = self.live = self.lab.traffic(connections=connections, rate=rate, duration=0, **options)
        if not self.started and not self._exit_hook:
            atexit.register(_stop_traffic_at_exit, weakref.ref(self))
            self._exit_hook = True
        return live

    def close(self) -> None:
        """Stop the session's live traffic; tear the lab down if this session brought it up, else only
        drop the switch connection (so the switch sees the session end now, not at exit). Idempotent."""
        if self.live is not None and not self.closed:
            try:
                self.live.stop()
            except Exception:
                pass
        self.closed = True
        if self._finalizer is not None:
            self._finalizer()
        elif self.lab.conn is not None:
            self.lab.conn.close()
            self.lab.conn, self.lab.lb = None, None

    def describe(self) -> str:
        cfg = self.lab.config
        how = f"brought up in {self.up_s:.1f} s" if self.started else "already running (attached; left up at the end)"
        return (f"lab {cfg.name!r}: {how}; workload {cfg.workload.kind}; VIP {cfg.vip}:{cfg.port}; "
                f"hosts {', '.join(f'{h.name}={h.role}' for h in cfg.hosts)}")


def open_lab(config: LabConfig | None = None, workload: str | None = None) -> LabSession:
    """Attach to the running lab of `config`, or bring it up and register its teardown; `workload`
    (echo, redis, http) overrides the config's. A running lab with another workload is refused."""
    from p4cf_kit.errors import ConfigError
    from p4cf_kit.lab import Lab
    cfg = with_workload(config or notebook_config(), workload)
    if lab_is_up(cfg):
        lab = Lab.attach(cfg.name)
        if workload is not None and lab.config.workload.kind != workload:
            raise ConfigError(f"lab {cfg.name!r} is up with workload {lab.config.workload.kind!r}, not "
                              f"{workload!r}: close the session that brought it up (session.close()) or run "
                              f"`p4cf down --lab {cfg.name}`, then run this cell again")
        return LabSession(lab, started=False)
    lab = Lab(cfg)
    t0 = time.monotonic()
    lab.up()  # rolls itself back on failure
    session = LabSession(lab, started=True, up_s=time.monotonic() - t0)
    finalizer = weakref.finalize(session, _teardown, lab)
    finalizer.atexit = False  # at exit the detached teardown takes over (see module doc)
    # A plain atexit hook is reached at once: the P4Runtime client's threads are daemons.
    atexit.register(_teardown_at_exit, finalizer, cfg.name)
    session._finalizer = finalizer
    return session


@contextmanager
def lab_session(config: LabConfig | None = None) -> Iterator[Any]:
    """`with lab_session() as lab:` for scripts: the lab is torn down on exit, also on error."""
    session = open_lab(config)
    try:
        yield session.lab
    finally:
        session.close()
