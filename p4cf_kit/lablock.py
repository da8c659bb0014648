"""One lab-changing operation at a time: a per-lab lock with a record of who holds it.

Why: two `p4cf migrate` to the same host at once both fail deep inside Podman ("the container
name is already in use"); a bring-up racing a `down` leaves half a lab. Every operation that
changes a lab (up, down, pool changes, migrate, experiment, switch restart) holds this lock;
a second one waits, saying who holds it and what it is doing, or with `--no-wait` refuses at
once with that message.

The lock is an `fcntl.flock` on `lab.lock` in the lab's state folder, so the kernel drops it
when its process dies; `lab.lock.json` beside it names the holder (command, pid, what it is
doing, since when). A record whose process is gone is stale: the next holder takes over and
says so. Within one process the lock is reentrant per thread (an experiment's migrations run
inside the experiment's hold), and other threads of the process wait like other processes.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from p4cf_kit.errors import LabBusy

LOCK_FILE = "lab.lock"
RECORD_FILE = "lab.lock.json"
POLL_S = 0.2

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class _Hold:
    fd: int
    depth: int


_guard = threading.Lock()
_thread_locks: dict[str, threading.RLock] = {}
_holds: dict[str, _Hold] = {}
_policy = {"wait": True}


def set_waiting(wait: bool) -> None:
    """Process-wide default: wait for a busy lab (True) or refuse at once (False, `--no-wait`)."""
    _policy["wait"] = wait


def _say(text: str) -> None:
    print(f"p4cf: {text}", file=sys.stderr, flush=True)


def _command_line() -> str:
    argv = list(sys.argv) or ["python"]
    name = os.path.basename(argv[0])
    if name == "__main__.py":  # python -m p4cf_kit
        name = "p4cf"
    return " ".join([name, *argv[1:]])[:200]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder(state: Path) -> dict[str, Any] | None:
    """The holder record of the lab in `state` (None when there is none or it is unreadable)."""
    try:
        record: dict[str, Any] = json.loads((state / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record


def describe(record: dict[str, Any] | None, lab: str) -> str:
    if not record:
        return f"lab {lab!r} is busy (another process holds its lock)"
    since = time.strftime("%H:%M:%S", time.localtime(record.get("since", 0)))
    return (f"lab {lab!r} is busy: `{record.get('command', '?')}` (pid {record.get('pid', '?')}) "
            f"is {record.get('doing', 'changing it')} since {since}")


def _write_record(state: Path, doing: str) -> None:
    record = {"command": _command_line(), "pid": os.getpid(), "doing": doing, "since": time.time()}
    tmp = state / f"{RECORD_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, state / RECORD_FILE)


def _open_locked(state: Path, lab: str, doing: str, wait: bool, say: Callable[[str], None]) -> int:
    """Take the flock (waiting or not), on the file that is still at the path."""
    told = False
    while True:
        fd = os.open(state / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            message = describe(holder(state), lab)
            if not wait:
                raise LabBusy(f"{message}; not waiting (--no-wait)") from None
            if not told:
                say(f"{message}; waiting for it to finish (--no-wait refuses instead)")
                told = True
            time.sleep(POLL_S)
            continue
        try:  # the file may have been removed and recreated while we waited on the old one
            same = os.fstat(fd).st_ino == os.stat(state / LOCK_FILE).st_ino
        except FileNotFoundError:
            same = False
        if same:
            if told:
                say(f"lab {lab!r} is free now: {doing}")
            return fd
        os.close(fd)


def acquire(state: Path, lab: str, doing: str, wait: bool | None = None,
            say: Callable[[str], None] = _say) -> None:
    """Hold the lab's lock for `doing` (reentrant per thread); raises LabBusy with --no-wait."""
    wait = _policy["wait"] if wait is None else wait
    key = str(state)
    with _guard:
        tlock = _thread_locks.setdefault(key, threading.RLock())
    if not tlock.acquire(blocking=False):
        if not wait:
            raise LabBusy(f"{describe(holder(state), lab)}; not waiting (--no-wait)")
        say(f"{describe(holder(state), lab)}; waiting for it to finish")
        tlock.acquire()
    try:
        hold = _holds.get(key)
        if hold is not None:  # this thread holds it already: nested operation
            hold.depth += 1
            return
        state.mkdir(parents=True, exist_ok=True)
        fd = _open_locked(state, lab, doing, wait, say)
        previous = holder(state)
        if previous and previous.get("pid") != os.getpid():
            pid = int(previous.get("pid", 0) or 0)
            gone = "died" if not pid_alive(pid) else "no longer holds it"
            say(f"lab {lab!r}: taking over a stale lock: `{previous.get('command', '?')}` "
                f"(pid {pid}) {gone} while {previous.get('doing', 'changing the lab')}")
        _write_record(state, doing)
        _holds[key] = _Hold(fd, 1)
    except BaseException:
        tlock.release()
        raise


def release(state: Path) -> None:
    key = str(state)
    hold = _holds[key]
    hold.depth -= 1
    if hold.depth == 0:
        del _holds[key]
        try:
            (state / RECORD_FILE).unlink(missing_ok=True)
        finally:
            os.close(hold.fd)  # drops the flock
    _thread_locks[key].release()


def note(state: Path, doing: str) -> None:
    """Update what the holder (this process) is doing, e.g. a migration's phase."""
    if str(state) in _holds:
        _write_record(state, doing)


@contextmanager
def lab_lock(state: Path, lab: str, doing: str, wait: bool | None = None,
             say: Callable[[str], None] = _say) -> Iterator[None]:
    acquire(state, lab, doing, wait, say)
    try:
        yield
    finally:
        release(state)


def holds_lab_lock(doing: str | Callable[..., str | None]) -> Callable[[F], F]:
    """Decorate a `Lab` method: it runs holding its lab's lock. `doing` may be a function of the
    call's arguments; when it returns None (a call that only reads) no lock is taken."""
    def wrap(method: F) -> F:
        @functools.wraps(method)
        def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
            what = doing(*args, **kwargs) if callable(doing) else doing
            if what is None:
                return method(self, *args, **kwargs)
            with lab_lock(self.names.state, self.config.name, what):
                return method(self, *args, **kwargs)
        return cast(F, locked)  # wraps keeps the signature F describes
    return wrap
