"""Live switch counters: a thread that reads them every interval and keeps packets/s per backend.

Why a thread: the pool panel's chart must move while the reader clicks and while
other cells run; polling from the kernel's main thread would block both. Reads go
through the lab's widget lock, so they never interleave with a pool change or a
migration started from another panel.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import pandas as pd

from p4cf_kit.widgets.runner import error_text, lab_lock

SAMPLE_COLUMNS = ("t_s", "host", "packets_per_s")
MARKER_COLUMNS = ("t_s", "label")


class CounterSampler:
    """Reads `lab.counters()` every `interval_s`; `rates` holds packets/s per backend host."""

    def __init__(self, lab: Any, interval_s: float = 1.0, keep_s: float = 120.0,
                 on_sample: Callable[["CounterSampler"], None] | None = None) -> None:
        self.lab = lab
        self.interval_s = interval_s
        self.keep_s = keep_s
        self.on_sample = on_sample
        self.error: str | None = None
        self.t0 = time.monotonic()
        self._rows: list[dict[str, Any]] = []
        self._markers: list[dict[str, Any]] = []
        self._last: dict[str, int] | None = None
        self._last_t = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, daemon=True, name="p4cf-counter-sampler")
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def mark(self, label: str) -> None:
        """A vertical marker at now (e.g. a pool change)."""
        with self._lock:
            self._markers.append({"t_s": time.monotonic() - self.t0, "label": label})

    def sample_once(self) -> None:
        """One read of the counters; packets/s since the previous read, per host."""
        with lab_lock(self.lab):
            counters = self.lab.counters()
        now = time.monotonic()
        backends = counters[counters["role"] == "backend"]
        totals = {str(h): int(p) for h, p in backends.groupby("host")["packets"].sum().items()}
        with self._lock:
            if self._last is not None and now > self._last_t:
                dt = now - self._last_t
                for host, packets in totals.items():
                    rate = max(packets - self._last.get(host, packets), 0) / dt
                    self._rows.append({"t_s": now - self.t0, "host": host, "packets_per_s": rate})
                cutoff = now - self.t0 - self.keep_s
                self._rows = [r for r in self._rows if r["t_s"] >= cutoff]
                self._markers = [m for m in self._markers if m["t_s"] >= cutoff]
            self._last, self._last_t = totals, now

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample_once()
                self.error = None
            except Exception as exc:  # lab gone or switch busy: report, and stop polling a dead lab
                self.error = f"live counters stopped: {error_text(exc)}"
                self._stop.set()
            if self.on_sample is not None:
                try:
                    self.on_sample(self)
                except Exception as exc:
                    self.error = f"live chart failed: {error_text(exc)}"
            self._stop.wait(self.interval_s)

    @property
    def rates(self) -> pd.DataFrame:
        with self._lock:
            return pd.DataFrame(self._rows, columns=list(SAMPLE_COLUMNS))

    @property
    def markers(self) -> pd.DataFrame:
        with self._lock:
            return pd.DataFrame(self._markers, columns=list(MARKER_COLUMNS))
