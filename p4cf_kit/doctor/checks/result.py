"""What a doctor check returns, and what the results add up to.

Its own module so the report and every group of checks share one result type without
importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

OK, FAIL, WARN, SKIP = "OK", "FAIL", "WARN", "SKIP"


@dataclass(frozen=True)
class CheckResult:
    """What one check found. A failed `required` check makes `p4cf doctor` exit nonzero,
    a failed optional one is a warning; `skipped` marks a check that could not run here."""

    name: str
    ok: bool
    required: bool
    detail: str
    fix: str = ""
    skipped: bool = False

    @property
    def status(self) -> str:
        """OK, FAIL (required, failed), WARN (optional, failed) or SKIP."""
        if self.skipped:
            return SKIP
        if self.ok:
            return OK
        return FAIL if self.required else WARN

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


Check = Callable[[], CheckResult]


def all_required_ok(results: Sequence[CheckResult]) -> bool:
    """True when no required check failed (skipped and optional ones do not count)."""
    return not any(r.status == FAIL for r in results)
