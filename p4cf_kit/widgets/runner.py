"""Run long lab work (pool changes, migrations) in a background thread.

Why: a callback that runs in the kernel's main thread freezes the notebook (no
other cell, no widget update) until it returns, and a traceback inside a widget
callback goes to the log, not to the reader. `TaskRunner` runs one task at a time
in a daemon thread, disables the panel's controls meanwhile, and turns an error
into one readable line in the panel's status.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from p4cf_kit.errors import KitError

if TYPE_CHECKING:
    from p4cf_kit.lab import Lab

#: One lock per lab object: the P4Runtime client of a lab is shared by its panels.
_LOCKS: dict[int, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def lab_lock(lab: Lab) -> threading.RLock:
    """The lock that serialises this kit's widget calls into `lab` (switch reads and writes)."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(id(lab), threading.RLock())


def error_text(exc: BaseException) -> str:
    """What went wrong, in one line: the kit's own errors already name the fix."""
    if isinstance(exc, KitError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def status_html(text: str, kind: str = "info") -> str:
    """HTML for a status line; `kind` is info, busy, ok or error."""
    colour = {"info": "#444444", "busy": "#0072B2", "ok": "#117733", "error": "#B00020"}.get(kind, "#444444")
    icon = {"busy": "⏳ ", "ok": "✔ ", "error": "✖ "}.get(kind, "")
    return f'<span style="color:{colour}">{icon}{html.escape(text)}</span>'


class TaskRunner:
    """One background task at a time; controls disabled while it runs; errors shown in `status`."""

    def __init__(self, status: widgets.HTML, controls: Sequence[widgets.Widget] = ()) -> None:
        self.status = status
        self.controls = list(controls)
        self.error: str | None = None
        self.result: Any = None
        #: Called after every task, controls re-enabled: panels re-disable what must stay off.
        self.after_each: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._done.set()
        self._show_elapsed = True

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def start(self, task: Callable[[], Any], busy: str, done: Callable[[Any], str] | None = None,
              on_error: Callable[[BaseException], None] | None = None, show_elapsed: bool = True) -> bool:
        """Run `task` in the background; False (and nothing started) when one is running already.
        `show_elapsed` appends the task's wall time to the done message."""
        if self.running:
            self.status.value = status_html("busy with the previous action; wait for it to finish", "busy")
            return False
        self._done.clear()
        self.error, self.result = None, None
        self._set_enabled(False)
        self.status.value = status_html(busy, "busy")
        self._show_elapsed = show_elapsed
        self._thread = threading.Thread(target=self._run, args=(task, done, on_error), daemon=True,
                                        name="p4cf-widget-task")
        self._thread.start()
        return True

    def _run(self, task: Callable[[], Any], done: Callable[[Any], str] | None,
             on_error: Callable[[BaseException], None] | None) -> None:
        t0 = time.monotonic()
        try:
            self.result = task()
            message = done(self.result) if done else "done"
            elapsed = f" ({time.monotonic() - t0:.1f} s)" if self._show_elapsed else ""
            self.status.value = status_html(message + elapsed, "ok")
        except BaseException as exc:  # shown in the panel: a widget callback has nobody to raise to
            self.error = error_text(exc)
            self.status.value = status_html(self.error, "error")
            if on_error is not None:
                try:
                    on_error(exc)
                except Exception:
                    pass
        finally:
            self._set_enabled(True)
            if self.after_each is not None:
                try:
                    self.after_each()
                except Exception as exc:
                    self.status.value = status_html(error_text(exc), "error")
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current task is done; True when it finished within `timeout`."""
        return self._done.wait(timeout)

    def _set_enabled(self, enabled: bool) -> None:
        for control in self.controls:
            control.disabled = not enabled
