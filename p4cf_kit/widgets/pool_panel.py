"""Pool panel: a checkbox per host, Apply makes those hosts the VIP's pool, a live chart shows the effect.

Apply calls `lab.pool(hosts)` (servers are started on hosts that have none) in a
background thread; the chart is fed by a CounterSampler, so the reader sees the
traffic move as soon as the switch entries change.

A pool change breaks every open connection whose hash slot then names another backend
(that backend resets it). With the client's traffic attached (`traffic=`), the hint
before Apply names how many open connections will break, from the program's own hash
(control.flow_hash), and the message after it says what happened to each, from the
client log (analysis.pool_change). The line "pool now" always shows the pool as read
back from the switch; a refused change leaves it and the boxes as they were.

With the notebook's session attached (`session=`), Tear down stops the traffic and
tears the lab down (if the notebook brought it up): an explicit act, never the end of
Run All. When the lab goes away (that button, a teardown cell, `p4cf down`), the panel
says so and how to bring it back.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import pandas as pd

from p4cf_kit.widgets.chart import live_rates_png
from p4cf_kit.widgets.lab_watch import gone_text, lab_running
from p4cf_kit.widgets.runner import TaskRunner, lab_lock, status_html
from p4cf_kit.widgets.sampler import CounterSampler

if TYPE_CHECKING:
    from p4cf_kit.lab import Lab
    from p4cf_kit.notebook.session import LabSession
    from p4cf_kit.topology.traffic import TrafficRun

#: Seconds the client log is watched after a change before the panel reports what it did.
SETTLE_S = 1.5


class PoolPanel:
    """Checkboxes (one per non-client host), Apply, the pool now, a hint, status line, live counter chart."""

    def __init__(self, lab: Lab, live: bool = True, interval_s: float = 1.0, traffic: TrafficRun | None = None,
                 session: LabSession | None = None) -> None:
        self.lab = lab
        self.traffic = traffic
        self.session = session
        self.gone = False
        with lab_lock(lab):
            self.pool: list[str] = list(lab.pool())
        #: Pool changes made here: t_ns (CLOCK_REALTIME, as the client log) and label, for time plots.
        self.changes: list[dict[str, Any]] = []
        #: Per change: what it did to each open connection (analysis.pool_change.change_effect).
        self.effects: list[pd.DataFrame] = []
        #: The last change's outcome as plain text (what the status line says).
        self.report = ""
        self._before_error: str | None = None  # the status a failed counter read replaced
        self._error_html = ""
        hosts = [h.name for h in lab.config.hosts if h.role != "client"]
        self.checkboxes = {h: widgets.Checkbox(value=h in self.pool, description=h, indent=False,
                                               layout=widgets.Layout(width="70px")) for h in hosts}
        self.apply_button = widgets.Button(description="Apply", button_style="primary", icon="check",
                                           tooltip="make the checked hosts the VIP's backend pool")
        self.teardown_button = widgets.Button(
            description="Tear down", button_style="danger", icon="power-off",
            tooltip="stop the traffic and tear the lab down (only if this notebook brought it up)",
            layout=widgets.Layout(display="" if session is not None else "none", margin="0 0 0 24px"))
        self.pool_line = widgets.HTML()
        self.hint = widgets.HTML()
        self.status = widgets.HTML()
        self.chart = widgets.Image(format="png", layout=widgets.Layout(width="100%", max_width="760px"))
        self.runner = TaskRunner(self.status, [self.apply_button, self.teardown_button, *self.checkboxes.values()])
        self.runner.after_each = self._after_task
        self.sampler = CounterSampler(lab, interval_s=interval_s, on_sample=self._redraw)
        self.apply_button.on_click(lambda _b: self.apply())
        self.teardown_button.on_click(lambda _b: self.tear_down())
        for box in self.checkboxes.values():
            box.observe(lambda _change: self._update_hint(), names="value")
        self.widget = widgets.VBox([
            widgets.HTML(f"<b>Backend pool of VIP {lab.config.vip}:{lab.config.port}</b>"),
            widgets.HBox([*self.checkboxes.values(), self.apply_button, self.teardown_button]),
            self.pool_line, self.hint, self.status, self.chart,
        ])
        self._show_pool()
        self.status.value = status_html("tick the hosts that should serve the VIP, then Apply")
        self._redraw(self.sampler)
        if live:
            self.sampler.start()

    # --- actions ---------------------------------------------------------------------------------

    @property
    def selected(self) -> list[str]:
        return [h for h, box in self.checkboxes.items() if box.value]

    def follow(self, traffic: TrafficRun) -> None:
        """Attach the client traffic the hint and the reports are about (a TrafficRun)."""
        self.traffic = traffic
        self._show_pool()
        self._update_hint()

    def apply(self, hosts: Sequence[str] | None = None) -> bool:
        """Make `hosts` (default: the checked ones) the pool, in the background (same as clicking Apply)."""
        if self.gone:
            self.status.value = status_html(gone_text(self.lab), "error")
            return False
        if hosts is not None:
            for h, box in self.checkboxes.items():
                box.value = h in hosts
        target = self.selected
        if not target:
            self._reset_boxes()
            self.status.value = status_html(f"no host was ticked: the VIP needs at least one backend; "
                                            f"the pool stays {' '.join(self.pool)}", "error")
            return False
        old = list(self.pool)
        predicted = self._predict(target)

        def task() -> tuple[list[str], pd.DataFrame | None]:
            t_ns = time.time_ns()  # connections open now are those the change can touch
            with lab_lock(self.lab):
                pool = list(self.lab.pool(target))  # starts servers first; the switch write comes last
            self.pool = pool
            self.changes.append({"t_ns": time.time_ns(), "label": f"pool: {' '.join(pool)}"})
            self.sampler.mark(f"pool: {' '.join(pool)}")
            self._show_pool()
            return pool, self._effect(t_ns, predicted)

        def done(result: tuple[list[str], pd.DataFrame | None]) -> str:
            pool, effect = result
            self._update_hint()
            text = f"pool is now {' '.join(pool)} (was {' '.join(old)})"
            if effect is not None:
                from p4cf_kit.analysis.pool_change import describe_effect
                text += f"; {describe_effect(effect)}"
            elif self.traffic is None:
                text += "; no client traffic attached to this panel, so no report on connections"
            self.report = text
            return text

        return self.runner.start(task, f"setting the pool to {' '.join(target)}…", done, on_error=self._refused)

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
        self._reset_boxes()
        self._show_pool()
        return pool

    def stop(self) -> None:
        """Stop the live chart (the lab is left as it is); the panel says so."""
        self.sampler.stop()
        self._redraw(self.sampler)
        for control in self.runner.controls:
            control.disabled = True
        if not self.gone:
            self.status.value = status_html("live chart stopped (panel.stop()); the lab is still up: "
                                            "re-run this cell for a live panel")

    def tear_down(self) -> bool:
        """Stop the traffic and the chart, then close the notebook's session (= clicking Tear down):
        the lab goes if the notebook brought it up, else it is only let go."""
        if self.session is None:
            self.status.value = status_html("this panel has no session to tear down (PoolPanel(..., session=))",
                                            "error")
            return False
        session = self.session

        def task() -> str:
            self.sampler.stop()
            if self.traffic is not None:
                self.traffic.stop()
            if not session.started:  # someone else's lab: leave it with its configured pool
                from p4cf_kit.notebook import restore_pool
                with lab_lock(self.lab):
                    restore_pool(self.lab)
            session.close()
            return str(self.lab.config.name)

        def done(name: str) -> str:
            self._lab_gone("", f"pool: no longer followed (this panel let go of lab {name!r})"
                           if not session.started else "")
            if session.started:
                return (f"lab {name!r} torn down (Tear down). To bring it back, run the notebook again from "
                        "the top (Run All brings a lab up).")
            return (f"let go of lab {name!r}: it was running before this notebook, so it is left up "
                    f"(`p4cf down --lab {name}` removes it). Re-run this cell to use it again.")

        return self.runner.start(task, "stopping the traffic and tearing the lab down…", done, show_elapsed=False)

    # --- what a change does to connections -------------------------------------------------------

    def _open_connections(self) -> pd.DataFrame | None:
        """The client's connections open now (client log), or None without traffic to look at."""
        if self.traffic is None:
            return None
        from p4cf_kit import analysis as an
        from p4cf_kit.analysis.pool_change import open_connections
        try:
            log = an.load_client_log(self.traffic.csv_path)
        except (OSError, ValueError, pd.errors.EmptyDataError):
            return None
        return open_connections(log, time.time_ns())

    def _predict(self, target: Sequence[str]) -> pd.DataFrame | None:
        """Open connections with the backend the program's hash gives each now (`current`, so also
        for one that has had no reply yet) and under `target` (`predicted`)."""
        from p4cf_kit.control.flow_hash import pool_slot
        conns = self._open_connections()
        if conns is None:
            return None
        conns = conns.copy()
        cfg = self.lab.config

        def backend(c: Any, pool: Sequence[str]) -> str:
            return pool[pool_slot(str(c.src_ip), int(c.src_port), str(cfg.vip), cfg.port, len(pool))]

        conns["current"] = [backend(c, self.pool) for c in conns.itertuples()]
        conns["predicted"] = [backend(c, target) for c in conns.itertuples()]
        return conns

    def _effect(self, t_ns: int, predicted: pd.DataFrame | None) -> pd.DataFrame | None:
        """After SETTLE_S, what the change did to each connection open before it (client log)."""
        if self.traffic is None or predicted is None:
            return None
        from p4cf_kit import analysis as an
        from p4cf_kit.analysis.pool_change import change_effect
        time.sleep(SETTLE_S)
        effect = change_effect(an.load_client_log(self.traffic.csv_path), t_ns,
                               dict(zip(predicted["conn_id"].astype(int), predicted["predicted"])))
        self.effects.append(effect)
        return effect

    # --- display ---------------------------------------------------------------------------------

    def _show_pool(self) -> None:
        following = ""
        if self.traffic is not None:
            conns = self._open_connections()
            following = f" · client traffic attached ({len(conns)} connections open)" if conns is not None else ""
        self.pool_line.value = (f'<span style="color:#222222">pool now (read from the switch): '
                                f'<b>{" ".join(self.pool)}</b>{following}</span>')

    def _reset_boxes(self) -> None:
        for h, box in self.checkboxes.items():
            box.value = h in self.pool

    def _refused(self, _exc: BaseException) -> None:
        """A change the lab refused: read the real pool back, boxes as they were."""
        try:
            with lab_lock(self.lab):
                self.pool = list(self.lab.pool())
        except Exception:
            pass
        self._reset_boxes()
        self._show_pool()
        self._update_hint()

    def _update_hint(self) -> None:
        target = self.selected
        if sorted(target) == sorted(self.pool):
            self.hint.value = ""
            return
        if not target:
            self.hint.value = status_html(f"no host ticked: the VIP needs at least one backend (Apply would "
                                          f"keep {' '.join(self.pool)})", "info")
            return
        change = f"{' '.join(self.pool)} → {' '.join(target)}"
        conns = self._predict(target)
        if conns is not None and len(conns):
            moving = conns[conns["predicted"] != conns["current"]]
            if moving.empty:
                self.hint.value = status_html(f"Apply ({change}): all {len(conns)} open connections keep "
                                              "their backend", "info")
                return
            was = ", ".join(f"{n} now on {h}" for h, n in moving["current"].value_counts().sort_index().items())
            self.hint.value = status_html(
                f"Apply ({change}) will break {len(moving)} of {len(conns)} open connections ({was}): the hash "
                "sends them to another backend, which resets them; the client does not reopen them. "
                f"{len(conns) - len(moving)} keep their backend.", "info")
            return
        if len(target) != len(self.pool):
            self.hint.value = status_html(f"Apply ({change}): the hash is taken modulo the pool size, so most "
                                          "open connections will land on another backend, which resets them",
                                          "info")
        else:
            replaced = [old for old, new in zip(self.pool, target) if old != new]
            self.hint.value = status_html(f"Apply ({change}): every open connection on {' '.join(replaced)} "
                                          "will be reset (its slot goes to another backend); the others keep "
                                          "theirs", "info")

    def _lab_gone(self, text: str, pool_text: str = "") -> None:
        """No lab any more: controls off for good, the chart kept as it was, `text` says why and what to do."""
        self.gone = True
        self.sampler.stop()
        self._after_task()
        pool_text = pool_text or "pool now: unknown (the lab is gone)"
        self.pool_line.value = f'<span style="color:#777777">{html.escape(pool_text)}</span>'
        self.hint.value = ""
        if text:
            self.status.value = status_html(text, "error")

    def _after_task(self) -> None:
        if self.gone:
            for control in self.runner.controls:
                control.disabled = True

    def _redraw(self, sampler: CounterSampler) -> None:
        self.chart.value = live_rates_png(sampler.rates, sampler.markers, self.pool)
        if self.gone or self.runner.running:
            return
        if sampler.error:
            try:
                running = lab_running(self.lab)
            except Exception:
                running = True
            if not running:
                self._lab_gone(gone_text(self.lab))
                return
            if self._before_error is None:  # a failed read (switch busy): said, and undone by the next good one
                self._before_error = self.status.value
            self.status.value = self._error_html = status_html(sampler.error, "error")
        elif self._before_error is not None:
            if self.status.value == self._error_html:  # nothing else has been said since
                self.status.value = self._before_error
            self._before_error = None

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
