"""Live switch counters: a thread that reads them every interval and keeps packets/s per backend.

Why a thread: the pool panel's chart must move while the reader clicks and while
other cells run; polling from the kernel's main thread would block both. Reads go
through the lab's widget lock, so they never interleave with a pool change or a
migration started from another panel.

What is kept is only what was measured: a rate is the increase of one backend's
counter between two reads in which that backend held the same slot. A backend that
joins the pool has no rate until its second read, one that leaves has none after it,
and a counter that went backwards (entry re-created) gives no rate for that interval.
So the chart can draw a gap as a gap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from p4cf_kit.widgets.runner import error_text, lab_lock

if TYPE_CHECKING:
    from p4cf_kit.lab import Lab

#: One row per backend per measured interval: packets/s between t_from_s and t_s.
SAMPLE_COLUMNS = ("t_from_s", "t_s", "host", "packets_per_s")
#: The pool as the switch held it at each read (hosts in slot order, space separated).
POOL_COLUMNS = ("t_s", "pool")
MARKER_COLUMNS = ("t_s", "label")


class CounterSampler:
    """Reads `lab.counters()` every `interval_s`; `rates` holds packets/s per backend host."""

    def __init__(self, lab: Lab, interval_s: float = 1.0, keep_s: float = 120.0,
                 on_sample: Callable[[CounterSampler], None] | None = None) -> None:
        self.lab = lab
        self.interval_s = interval_s
        self.keep_s = keep_s
        self.on_sample = on_sample
        self.error: str | None = None
        self.t0 = time.monotonic()
        self._rows: list[dict[str, Any]] = []
        self._pools: list[dict[str, Any]] = []
        self._markers: list[dict[str, Any]] = []
        self._last: dict[tuple[str, int], int] | None = None
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

    def now_s(self) -> float:
        return time.monotonic() - self.t0

    def mark(self, label: str, t_s: float | None = None) -> None:
        """A vertical marker at `t_s` (default now), e.g. a pool change."""
        with self._lock:
            self._markers.append({"t_s": self.now_s() if t_s is None else t_s, "label": label})

    def sample_once(self) -> None:
        """One read of the counters, recorded at the time it returned."""
        with lab_lock(self.lab):
            counters = self.lab.counters()
        self.record(self.now_s(), counters)

    def record(self, t_s: float, counters: pd.DataFrame) -> None:
        """Record one read (`lab.counters()`'s frame) taken at `t_s` seconds since the sampler began."""
        backends = counters[counters["role"] == "backend"].sort_values("index")
        totals = {(str(h), int(i)): int(p) for h, i, p in zip(backends["host"], backends["index"],
                                                             backends["packets"])}
        pool = " ".join(dict.fromkeys(str(h) for h in backends["host"]))
        with self._lock:
            self._pools.append({"t_s": t_s, "pool": pool})
            if self._last is not None and t_s > self._last_t:
                dt = t_s - self._last_t
                per_host: dict[str, float] = {}
                broken: set[str] = set()
                for (host, index), packets in totals.items():
                    before = self._last.get((host, index))
                    if before is None or packets < before:  # new in this slot, or counter re-created
                        broken.add(host)
                        continue
                    per_host[host] = per_host.get(host, 0.0) + (packets - before) / dt
                for host, rate in per_host.items():
                    if host not in broken:
                        self._rows.append({"t_from_s": self._last_t, "t_s": t_s, "host": host,
                                           "packets_per_s": rate})
                cutoff = t_s - self.keep_s
                self._rows = [r for r in self._rows if r["t_s"] >= cutoff]
                self._pools = [p for p in self._pools if p["t_s"] >= cutoff]
                self._markers = [m for m in self._markers if m["t_s"] >= cutoff]
            self._last, self._last_t = totals, t_s

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample_once()
                self.error = None
            except Exception as exc:  # switch busy or lab gone: report; the panel stops a sampler of a gone lab
                self.error = f"live counters: a read failed: {error_text(exc)}"
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
    def pools(self) -> pd.DataFrame:
        with self._lock:
            return pd.DataFrame(self._pools, columns=list(POOL_COLUMNS))

    @property
    def markers(self) -> pd.DataFrame:
        with self._lock:
            return pd.DataFrame(self._markers, columns=list(MARKER_COLUMNS))
