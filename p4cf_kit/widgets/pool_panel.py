"""Pool panel: a checkbox per host, Apply makes those hosts the VIP's pool, a live chart shows the effect.

Apply calls `lab.pool(hosts)` (servers are started on hosts that have none) in a
background thread; the chart is fed by a CounterSampler, so the reader sees the
traffic move as soon as the switch entries change. A pool of a different size
remaps most flows (hash mod n): the panel says so before it happens.
"""

from __future__ import annotations

from typing import Any, Sequence

import time

import ipywidgets as widgets

from p4cf_kit.widgets.chart import live_rates_png
from p4cf_kit.widgets.runner import TaskRunner, lab_lock, status_html
from p4cf_kit.widgets.sampler import CounterSampler


class PoolPanel:
    """Checkboxes (one per non-client host), Apply, status line, live counter chart."""

    def __init__(self, lab: Any, live: bool = True, interval_s: float = 1.0) -> None:
        self.lab = lab
        with lab_lock(lab):
            self.pool: list[str] = list(lab.pool())
        #: Pool changes made here: t_ns (CLOCK_REALTIME, as the client log) and label, for time plots.
        self.changes: list[dict[str, Any]] = []
        hosts = [h.name for h in lab.config.hosts if h.role != "client"]
        self.checkboxes = {h: widgets.Checkbox(value=h in self.pool, description=h, indent=False,
                                               layout=widgets.Layout(width="70px")) for h in hosts}
        self.apply_button = widgets.Button(description="Apply", button_style="primary", icon="check",
                                           tooltip="make the checked hosts the VIP's backend pool")
        self.status = widgets.HTML(status_html(self._pool_text()))
        self.hint = widgets.HTML()
        self.chart = widgets.Image(format="png", layout=widgets.Layout(width="100%", max_width="760px"))
        self.runner = TaskRunner(self.status, [self.apply_button, *self.checkboxes.values()])
        self.sampler = CounterSampler(lab, interval_s=interval_s, on_sample=self._redraw)
        self.apply_button.on_click(lambda _b: self.apply())
        for box in self.checkboxes.values():
            box.observe(lambda _change: self._update_hint(), names="value")
        self.widget = widgets.VBox([
            widgets.HTML(f"<b>Backend pool of VIP {lab.config.vip}:{lab.config.port}</b>"),
            widgets.HBox([*self.checkboxes.values(), self.apply_button]),
            self.hint, self.status, self.chart,
        ])
        self._redraw(self.sampler)
        if live:
            self.sampler.start()

    # --- actions ---------------------------------------------------------------------------------

    @property
    def selected(self) -> list[str]:
        return [h for h, box in self.checkboxes.items() if box.value]

    def apply(self, hosts: Sequence[str] | None = None) -> bool:
        """Make `hosts` (default: the checked ones) the pool, in the background (same as clicking Apply)."""
        if hosts is not None:
            for h, box in self.checkboxes.items():
                box.value = h in hosts
        target = self.selected
        if not target:
            self.status.value = status_html("check at least one host: the VIP needs a backend", "error")
            return False

        def task() -> list[str]:
            with lab_lock(self.lab):
                return list(self.lab.pool(target))

        def done(pool: list[str]) -> str:
            self.pool = pool
            self.changes.append({"t_ns": time.time_ns(), "label": f"pool: {' '.join(pool)}"})
            self.sampler.mark(f"pool: {' '.join(pool)}")
            self._update_hint()
            return f"pool is now {' '.join(pool)}"

        return self.runner.start(task, f"setting the pool to {' '.join(target)}…", done)

    def wait(self, timeout: float | None = 60.0) -> bool:
        return self.runner.wait(timeout)

    def refresh(self) -> list[str]:
        """Read the pool back from the switch (after a change made elsewhere) and show it."""
        with lab_lock(self.lab):
            pool = list(self.lab.pool())
        if pool != self.pool:
            self.pool = pool
            self.changes.append({"t_ns": time.time_ns(), "label": f"pool: {' '.join(pool)}"})
            self.sampler.mark(f"pool: {' '.join(pool)}")
        for h, box in self.checkboxes.items():
            box.value = h in pool
        self.status.value = status_html(self._pool_text())
        return pool

    def stop(self) -> None:
        """Stop the live chart (the lab is left as it is); the panel says so."""
        self.sampler.stop()
        self._redraw(self.sampler)
        for control in self.runner.controls:
            control.disabled = True
        self.status.value = status_html(f"{self._pool_text()} · live chart stopped (panel closed)")

    # --- display ---------------------------------------------------------------------------------

    def _pool_text(self) -> str:
        return f"pool now: {' '.join(self.pool)}"

    def _update_hint(self) -> None:
        target = self.selected
        if sorted(target) == sorted(self.pool):
            self.hint.value = ""
        elif len(target) != len(self.pool):
            self.hint.value = status_html(f"{len(self.pool)} → {len(target)} backends: the hash is taken modulo "
                                          "the pool size, so most open connections will land on another "
                                          "backend and break", "info")
        else:
            self.hint.value = status_html("same size: only the flows of the replaced slots move", "info")

    def _redraw(self, sampler: CounterSampler) -> None:
        self.chart.value = live_rates_png(sampler.rates, sampler.markers, self.pool)
        if sampler.error and not self.runner.running:
            self.status.value = status_html(sampler.error, "error")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
