"""Requests never answered and replies that stopped, from a traffic client's summary JSON.

Why its own check: a connection whose replies stop is not broken (no reset, no EOF), so a
run can look clean ("broken: 0") while most of its requests went unanswered; a switch that
lost its entries does exactly that. Experiments that run unattended must fail loudly then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_MAX_SILENCE_S = 5.0


@dataclass(frozen=True)
class Silence:
    """One connection that ended with unanswered requests: since when, for how long."""

    conn_id: int
    stopped_ns: int
    silent_s: float
    unanswered: int
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def silences(summary: Mapping[str, Any]) -> list[Silence]:
    """The connections whose replies stopped (oldest stop first)."""
    out = [Silence(int(c["conn_id"]), int(c["replies_stopped_ns"]), float(c.get("silent_s", 0.0)),
                   int(c.get("unanswered", 0)), c.get("error"))
           for c in summary.get("connections", []) if c.get("replies_stopped_ns")]
    return sorted(out, key=lambda s: (s.stopped_ns, s.conn_id))


def unanswered(summary: Mapping[str, Any]) -> int:
    """Requests that no reply answered, over all connections."""
    totals = summary.get("totals", {})
    if "unanswered" in totals:
        return int(totals["unanswered"])
    return sum(int(c.get("unanswered", 0)) for c in summary.get("connections", []))


def too_silent(summary: Mapping[str, Any], max_silence_s: float) -> list[Silence]:
    """The connections (not broken: those are reported as such) whose replies stopped for
    longer than `max_silence_s`."""
    return [s for s in silences(summary) if s.error is None and s.silent_s > max_silence_s]


def describe_silence(summary: Mapping[str, Any], max_silence_s: float) -> str:
    """One line for people: how many requests went unanswered and whose replies stopped."""
    sent = int(summary.get("totals", {}).get("sent", 0))
    lost = unanswered(summary)
    stopped = silences(summary)
    if not lost:
        return f"every request answered ({sent} sent)"
    share = f" ({100 * lost / sent:.0f} %)" if sent else ""
    line = f"{lost} of {sent} requests unanswered{share}"
    if stopped:
        longest = max(s.silent_s for s in stopped)
        line += (f"; replies stopped on {len(stopped)} connection(s), the longest silent "
                 f"{longest:.1f} s before the end")
        bad = too_silent(summary, max_silence_s)
        if bad:
            line += f" (over the {max_silence_s:g} s allowed on {len(bad)})"
    return line
