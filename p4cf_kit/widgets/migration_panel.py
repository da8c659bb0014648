"""Migration panel: pick a backend, a destination host and a mode, Migrate, watch the phases, read the result.

Migrate calls `lab.migrate(src, dst, on_phase=...)` in a background thread, so the
chips follow the phases live while the kernel stays responsive. With a
running traffic client attached, the panel also measures the client-visible
downtime and draws the client timeline of the migration (plots.timeline), saved
as PNG/SVG/PDF + CSV in `out_dir`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import pandas as pd

from p4cf_kit import analysis as an
from p4cf_kit.errors import MigrationError
from p4cf_kit.migration.record import PHASES as MIGRATION_PHASES
from p4cf_kit.notebook import migration_unavailable_reason, record_dict, serving_hosts
from p4cf_kit.plots import timeline
from p4cf_kit.widgets import table
from p4cf_kit.widgets.lab_watch import LabWatch, gone_text
from p4cf_kit.widgets.progress import PhaseProgress
from p4cf_kit.widgets.runner import TaskRunner, lab_lock, status_html

if TYPE_CHECKING:
    from p4cf_kit.lab import Lab
    from p4cf_kit.topology.traffic import TrafficRun

TABLE_COLUMNS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "migration": ("#", table.plain), "move": ("move", table.plain),
    **{c: (c.replace("_s", " (s)"), table.seconds) for c in an.PHASE_COLUMNS},
    "total_s": ("total (s)", table.seconds), "downtime_ms": ("client downtime (ms)", table.milliseconds),
    "survived": ("connections kept", table.plain), "ok": ("ok", table.yes_no)}


def _mode_dropdown(default: str) -> widgets.Dropdown:
    """The migration modes this machine can run (migration/modes.py); the others are named in
    the tooltip with the reason, rather than offered and refused."""
    from p4cf_kit.migration import modes
    usable = [m for m in modes.MODES if modes.support(m).available]
    refused = [f"{m}: {modes.support(m).reason}" for m in modes.MODES if m not in usable]
    return widgets.Dropdown(description="mode", options=usable,
                            value=default if default in usable else modes.DEFAULT_MODE,
                            tooltip="how memory moves: stop-and-copy (all while frozen) or lazy (pages "
                                    "follow after the restore)" + ("; not here: " + "; ".join(refused)
                                                                   if refused else ""),
                            layout=widgets.Layout(width="220px"))


class MigrationPanel:
    """Source, destination and mode dropdowns, Migrate button, phase progress, result table, timeline plot."""

    def __init__(self, lab: Lab, traffic: TrafficRun | None = None, out_dir: str | Path | None = None,
                 margin_s: float = 2.0) -> None:
        self.lab = lab
        self.traffic = traffic
        self.out_dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="p4cf-migrations-"))
        self.margin_s = margin_s
        self.records: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []
        self.figures: list[Any] = []
        self.src = widgets.Dropdown(description="backend", layout=widgets.Layout(width="180px"))
        self.dst = widgets.Dropdown(description="to host", layout=widgets.Layout(width="180px"))
        self.mode = _mode_dropdown(lab.config.migration.mode)
        self.migrate_button = widgets.Button(description="Migrate", button_style="warning", icon="truck",
                                             tooltip="checkpoint the backend, restore it on the destination "
                                                     "host, repoint the switch")
        # prepare, the downtime phases, cleanup; transfer only where hosts live on other machines
        self.progress = PhaseProgress([p for p in MIGRATION_PHASES
                                       if p != "transfer" or lab.config.remote_hosts])
        self.status = widgets.HTML()
        self.table = widgets.HTML()
        self.plot = widgets.Image(format="png", layout=widgets.Layout(width="100%", max_width="900px",
                                                                      display="none"))
        self.runner = TaskRunner(self.status, [self.src, self.dst, self.mode, self.migrate_button])
        self.runner.after_each = self._refresh_choices
        self.migrate_button.on_click(lambda _b: self.migrate())
        self.widget = widgets.VBox([
            widgets.HTML("<b>Live migration of a backend</b>"),
            widgets.HBox([self.src, widgets.HTML("&nbsp;→&nbsp;"), self.dst, self.mode, self.migrate_button]),
            self.progress.widget, self.status, self.table, self.plot,
        ])
        self.unavailable = migration_unavailable_reason()
        self.gone = False
        self._refresh_choices()
        if self.unavailable:
            self.status.value = status_html(self.unavailable, "error")
        else:
            self.status.value = status_html("choose a backend and a host, then Migrate")
        self.watch = LabWatch(lab, self._lab_gone)
        self.watch.start()

    def _lab_gone(self) -> None:
        """The lab went away (torn down, `p4cf down`): say so and how to bring it back; controls off."""
        self.gone = True
        for control in self.runner.controls:
            control.disabled = True
        if not self.runner.running:
            self.status.value = status_html(gone_text(self.lab), "error")

    # --- choices ---------------------------------------------------------------------------------

    def _refresh_choices(self) -> None:
        """Sources: the pool as the switch holds it; destinations: non-client hosts outside it that
        run no server (a server left over from a pool change would refuse the migration)."""
        if self.gone:
            self._lab_gone()
            return
        with lab_lock(self.lab):
            pool = list(self.lab.pool())
            serving = set(serving_hosts(self.lab))
        free = [h.name for h in self.lab.config.hosts if h.role != "client" and h.name not in pool
                and h.name not in serving]
        self.src.options, self.dst.options = pool, free
        if pool:
            self.src.value = pool[0]
        if free:
            self.dst.value = free[0]
        blocked = bool(self.unavailable) or not pool or not free
        self.migrate_button.disabled = blocked
        if not free and not self.unavailable and not self.runner.running:
            self.status.value = status_html("no destination left: every other host runs a server "
                                            "(nb.restore_pool(lab) stops those outside the pool)", "info")

    # --- migrating -------------------------------------------------------------------------------

    def migrate(self, src: str | None = None, dst: str | None = None) -> bool:
        """Start migrating `src` (default: the chosen one) to `dst`, in the background (= clicking Migrate)."""
        if self.unavailable or self.gone:
            self.status.value = status_html(self.unavailable or gone_text(self.lab), "error")
            return False
        src, dst = src or self.src.value, dst or self.dst.value
        if not src or not dst:
            self.status.value = status_html("choose a backend and a destination host first", "error")
            return False
        self.progress.reset()
        number = len(self.records) + 1
        return self.runner.start(lambda: self._migrate(number, src, dst), f"migrating {src} → {dst}…",
                                 self._done, on_error=self._failed, show_elapsed=False)

    def wait(self, timeout: float | None = 300.0) -> bool:
        """Block until the running migration (and its analysis) is done."""
        return self.runner.wait(timeout)

    def _migrate(self, number: int, src: str, dst: str) -> dict[str, Any]:
        with lab_lock(self.lab):
            record = record_dict(self.lab.migrate(src, dst, on_phase=self._on_phase, mode=self.mode.value))
        record.setdefault("migration", number)
        record["migration"] = number  # numbered per panel: m1, m2, ... as in the figures
        self.records.append(record)
        # every chip shown (all of migrate()'s phases, and any other the callback reported)
        self.progress.finish({p: record[f"{p}_s"] for p in self.progress.phases
                              if record.get(f"{p}_s") is not None})
        row = self._analyse(record)
        self.rows.append(row)
        return row

    def _on_phase(self, phase: str) -> None:
        self.progress.start(phase)

    def _analyse(self, record: dict[str, Any]) -> dict[str, Any]:
        """The result row; with traffic, downtime and survival of the moved connections and the timeline."""
        frame = an.phases_frame([record])
        rec = frame.iloc[0]
        row: dict[str, Any] = {"migration": int(rec["migration"]), "move": f"{rec['src']} → {rec['dst']}",
                               **{c: rec[c] for c in an.PHASE_COLUMNS}, "total_s": rec["total_s"],
                               "downtime_ms": None, "survived": None, "ok": bool(rec["ok"])}
        if self.traffic is None:
            return row
        self.status.value = status_html(f"migrated; watching the client for {self.margin_s:.0f} s more…", "busy")
        time.sleep(self.margin_s + 0.5)
        log = an.load_client_log(self.traffic.csv_path)
        downtimes = an.downtime_for_record(log, rec, self.margin_s)
        moved = downtimes[downtimes["migrated"]]
        row["downtime_ms"] = an.migration_downtime_ms(downtimes)
        row["survived"] = f"{int(moved['survived'].sum())} of {len(moved)}"
        files = timeline.plot_client_timeline(an.timeline_points(log, rec, self.margin_s), an.timeline_phases(rec),
                                              self.out_dir, f"{timeline.NAME}-m{int(rec['migration'])}",
                                              errors=an.timeline_errors(log, rec, self.margin_s))
        self.figures.append(files)
        self.plot.value = files.png.read_bytes()
        self.plot.layout.display = ""
        return row

    def _done(self, row: dict[str, Any]) -> str:
        self._render_table()
        extra = f", client downtime {row['downtime_ms']:.0f} ms" if isinstance(row.get("downtime_ms"), float) \
            and row["downtime_ms"] == row["downtime_ms"] else ""
        return f"migrated {row['move']}: {row['total_s']:.2f} s from checkpoint to switch update{extra}"

    def _failed(self, exc: BaseException) -> None:
        """Mark the failed phase; a failed migration (rolled back) still gets its row in the table."""
        if not isinstance(exc, MigrationError):
            self.progress.fail(None)
            return
        self.progress.fail(exc.phase)
        if exc.record is None:
            return
        row = exc.record.as_row()
        row["migration"] = len(self.records) + 1
        self.records.append(row)
        self.rows.append({"migration": row["migration"], "move": f"{row['src']} → {row['dst']}",
                          **{c: row.get(c) for c in an.PHASE_COLUMNS}, "total_s": row.get("total_s"),
                          "downtime_ms": None, "survived": None, "ok": False})
        self._render_table()

    # --- display ---------------------------------------------------------------------------------

    @property
    def results(self) -> pd.DataFrame:
        """One row per migration done through this panel (the table it shows): seconds to the ms,
        downtime to the ms."""
        frame = pd.DataFrame(self.rows, columns=list(TABLE_COLUMNS))
        seconds = [*an.PHASE_COLUMNS, "total_s"]
        frame[seconds] = frame[seconds].astype(float).round(3)
        frame["downtime_ms"] = frame["downtime_ms"].astype(float).round(0)
        return frame

    def _render_table(self) -> None:
        text = table.html_table(self.rows, TABLE_COLUMNS, "p4cf-migrations")
        self.table.value = f'<div class="p4cf-result-table" style="margin:6px 0"><b>Migrations</b>{text}</div>'

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
