"""The pool panel's live chart, drawn from a recorded sequence of counter reads (no lab needed).

The sequence: h2 and h3 in the pool; h4 joins at 9.5 s; h3 leaves at 19.5 s and comes back at
29.5 s. What is checked is what the chart draws (its artists), not pixels: a backend's steps
exist only over intervals it was measured in, no history is restyled by the pool of now, marker
lines are drawn and their labels overlap nothing, equal rates stay visible, and with no traffic
the chart says it is waiting.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from p4cf_kit.plots.markers import LABEL_GID, MARKER_GID
from p4cf_kit.widgets.chart import (
    RATE_GID,
    WAITING_GID,
    WAITING_TEXT,
    live_rates_figure,
    live_rates_png,
)
from p4cf_kit.widgets.sampler import CounterSampler

PER_S = {"h2": 400, "h3": 400, "h4": 250}  # h2 and h3 equal on purpose


def reads(slots: list[tuple[int, str, int]]) -> pd.DataFrame:
    """A `lab.counters()` frame: (slot index, host, packets) per backend slot, plus the client's slot."""
    rows = [{"index": 0, "role": "client", "host": "h1", "packets": 0}]
    rows += [{"index": i, "role": "backend", "host": h, "packets": p} for i, h, p in slots]
    return pd.DataFrame(rows)


def recorded(extra_markers: tuple[tuple[float, str], ...] = ()) -> tuple[CounterSampler, list[str]]:
    sampler = CounterSampler(lab=None)
    counts = dict.fromkeys(PER_S, 0)
    pool = ["h2", "h3"]
    for t in range(41):
        change = {10: ["h2", "h3", "h4"], 20: ["h2", "h4"], 30: ["h2", "h3"]}.get(t)
        if change:
            pool = change
            sampler.mark(f"pool: {' '.join(pool)}", t - 0.5)
        for h in pool:
            counts[h] += PER_S[h]
        sampler.record(float(t), reads([(k + 1, h, counts[h]) for k, h in enumerate(pool)]))
    for t, label in extra_markers:
        sampler.mark(label, t)
    return sampler, pool


def drawn(fig: Any, gid: str) -> list[Any]:
    ax = fig.axes[0]
    return [a for a in [*ax.patches, *ax.lines, *ax.texts] if (a.get_gid() or "").startswith(gid)]


def covered(fig: Any, host: str) -> list[tuple[float, float]]:
    """The time intervals a backend's steps cover."""
    out = []
    for artist in drawn(fig, f"{RATE_GID}{host}"):
        edges = artist.get_data().edges
        out.append((float(edges[0]), float(edges[-1])))
    return out


def test_the_sampler_keeps_only_measured_intervals() -> None:
    sampler, _ = recorded()
    rates = sampler.rates
    h3 = rates[rates["host"] == "h3"]
    assert h3[(h3["t_s"] > 19) & (h3["t_s"] <= 30)].empty
    h4 = rates[rates["host"] == "h4"]
    assert h4["t_s"].min() == 11.0  # its first read (at 10 s) is a baseline, not a rate of 0
    assert set(rates["packets_per_s"].round()) == {400.0, 250.0}  # no invented zeros
    # a counter that went backwards (entry re-created) gives no rate for that interval
    s = CounterSampler(lab=None)
    for t, packets in ((0.0, 100), (1.0, 500), (2.0, 50), (3.0, 450)):
        s.record(t, reads([(1, "h2", packets)]))
    assert s.rates["t_s"].tolist() == [1.0, 3.0]


def test_chart_draws_gaps_as_gaps_in_the_styling_of_their_time() -> None:
    sampler, pool = recorded()
    fig = live_rates_figure(sampler.rates, sampler.markers, pool)
    assert covered(fig, "h3") == [(0.0, 19.0), (30.0, 40.0)]  # left at 19.5, back at 29.5: no bridge
    assert covered(fig, "h4") == [(10.0, 19.0), (20.0, 29.0)]  # changed slot at 19.5: that interval unknown
    assert covered(fig, "h2") == [(0.0, 40.0)]
    for artist in drawn(fig, RATE_GID):
        assert artist.get_linestyle() == "solid"  # measured while in the pool: drawn as such, whatever now is
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["h2", "h3", "h4 (not in the pool now)"]


def test_equal_rates_stay_visible() -> None:
    sampler, pool = recorded()
    fig = live_rates_figure(sampler.rates, sampler.markers, pool)
    (h2,), (h3, _) = drawn(fig, f"{RATE_GID}h2"), drawn(fig, f"{RATE_GID}h3")
    assert h2.get_zorder() < h3.get_zorder() and h2.get_linewidth() > h3.get_linewidth() + 1.0


def test_markers_are_drawn_and_labels_overlap_nothing() -> None:
    crowd = ((38.2, "pool: h2 h3 h4"), (38.6, "pool: h2"), (39.9, "pool: h2 h3"))
    sampler, pool = recorded(crowd)
    fig = live_rates_figure(sampler.rates, sampler.markers, pool)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    lines = drawn(fig, MARKER_GID)
    assert sorted(float(line.get_xdata()[0]) for line in lines) == sorted(sampler.markers["t_s"].tolist())
    assert all(lo <= float(line.get_xdata()[0]) <= hi and line.get_linestyle() == "--" for line in lines)
    labels = [t.get_window_extent(renderer) for t in drawn(fig, LABEL_GID)]
    assert len(labels) == 6
    axes_box = ax.get_window_extent(renderer)
    others = [ax.get_legend().get_window_extent(renderer), ax.title.get_window_extent(renderer)]
    for k, box in enumerate(labels):
        assert axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1 and box.y1 <= axes_box.y1 + 1
        assert not any(box.overlaps(o) for o in labels[k + 1:] + others)
    # the labels sit above the data
    top_rate = ax.transData.transform((0, sampler.rates["packets_per_s"].max()))[1]
    assert min(box.y0 for box in labels) > top_rate


def test_without_traffic_the_chart_says_it_is_waiting() -> None:
    sampler = CounterSampler(lab=None)
    for t in range(5):
        sampler.record(float(t), reads([(1, "h2", 0), (2, "h3", 0)]))
    fig = live_rates_figure(sampler.rates, sampler.markers, ["h2", "h3"])
    assert drawn(fig, RATE_GID) == [] and fig.axes[0].get_legend() is None
    assert [t.get_text() for t in drawn(fig, WAITING_GID)] == [WAITING_TEXT]
    assert live_rates_png(sampler.rates, sampler.markers, ["h2", "h3"]).startswith(b"\x89PNG\r\n\x1a\n")
