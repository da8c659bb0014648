"""Notice when a panel's lab is gone, and say so with the way back.

Why: a panel outlives its lab (a teardown cell, the Tear down button, `p4cf down` in a
terminal). Greyed-out controls alone leave the reader guessing; the panel must say that
the lab is gone and how to bring it back. The check reads the switch's pid file, so
polling it every few seconds costs nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from p4cf_kit.lab import Lab


def lab_running(lab: Lab) -> bool:
    """True while the switch of `lab` runs (the lab is up)."""
    from p4cf_kit.notebook.session import lab_is_up
    return lab_is_up(lab.config)


def gone_text(lab: Lab) -> str:
    """What the panel says once its lab is gone."""
    name = lab.config.name
    return (f"lab {name!r} is gone (its switch is not running), so this panel can no longer act. "
            f"To bring it back, run the notebook again from the top (Run All brings a lab up), "
            f"or run `p4cf up` in a terminal and re-run this panel's cell.")


class LabWatch:
    """Calls `on_gone` once, from a daemon thread, when the lab's switch stops running."""

    def __init__(self, lab: Lab, on_gone: Callable[[], None], interval_s: float = 2.0) -> None:
        self.lab = lab
        self.on_gone = on_gone
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="p4cf-lab-watch")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                running = lab_running(self.lab)
            except Exception:
                continue
            if not running:
                self._stop.set()
                self.on_gone()
