"""Progress through the phases of a migration: a bar and one chip per phase.

Why chips and not only a bar: the reader wants to see *where* the time goes
(checkpoint, rewrite, restore, switch) while it happens and, when it fails,
which phase failed; the bar alone says only how far along it is.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence

import ipywidgets as widgets

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
_STYLE = {PENDING: ("#EEEEEE", "#777777"), RUNNING: ("#0072B2", "white"), DONE: ("#117733", "white"),
          FAILED: ("#B00020", "white")}


class PhaseProgress:
    """IntProgress over `phases` plus chips naming each phase and, when known, its duration."""

    def __init__(self, phases: Sequence[str]) -> None:
        self.phases = list(phases)
        self.bar = widgets.IntProgress(value=0, min=0, max=len(self.phases), description="",
                                       layout=widgets.Layout(width="260px"))
        self.chips = widgets.HTML()
        self.widget = widgets.HBox([self.bar, self.chips])
        self.reset()

    def reset(self) -> None:
        self.state = {p: PENDING for p in self.phases}
        self.seconds: dict[str, float] = {}
        self._started: dict[str, float] = {}
        self.bar.value, self.bar.bar_style = 0, ""
        self._render()

    def start(self, phase: str) -> None:
        """`phase` begins: the phases before it are done."""
        now = time.monotonic()
        if phase not in self.state:
            self.phases.append(phase)
            self.state[phase] = PENDING
            self.bar.max = len(self.phases)
        for p in self.phases[: self.phases.index(phase)]:
            if self.state[p] in (PENDING, RUNNING):
                self.state[p] = DONE
                self.seconds.setdefault(p, now - self._started.get(p, now))
        self.state[phase] = RUNNING
        self._started[phase] = now
        self.bar.value = self.phases.index(phase)
        self.bar.bar_style = "info"
        self._render()

    def finish(self, seconds: Mapping[str, float] | None = None) -> None:
        """All phases done; `seconds` (from the migration record) replaces the panel's own timing."""
        for p in self.phases:
            self.state[p] = DONE
        self.seconds.update({k: float(v) for k, v in (seconds or {}).items()})
        self.bar.value, self.bar.bar_style = self.bar.max, "success"
        self._render()

    def fail(self, phase: str | None = None) -> None:
        """The migration failed (in `phase` when known, else in the running one)."""
        failed = phase if phase in self.state else next((p for p in self.phases if self.state[p] == RUNNING), None)
        if failed is not None:
            self.state[failed] = FAILED
        self.bar.bar_style = "danger"
        self._render()

    def _render(self) -> None:
        parts = []
        for p in self.phases:
            bg, fg = _STYLE[self.state[p]]
            label = html.escape(p) + (f" {self.seconds[p]:.2f} s" if p in self.seconds else "")
            parts.append(f'<span style="background:{bg};color:{fg};padding:2px 8px;border-radius:10px;'
                         f'margin-right:4px;font-size:90%">{label}</span>')
        self.chips.value = "".join(parts)
