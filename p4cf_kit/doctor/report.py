"""Rendering doctor results: aligned text for people, a JSON object for programs."""

from __future__ import annotations

import json
from collections.abc import Sequence

from p4cf_kit.doctor.checks.result import FAIL, OK, SKIP, WARN, CheckResult, all_required_ok


def render_text(results: Sequence[CheckResult]) -> str:
    """One aligned line per check (`STATUS  name  detail`); every failure or warning is
    followed by its fix; a closing line counts each status."""
    width = max((len(r.name) for r in results), default=0)
    lines = []
    for r in results:
        lines.append(f"{r.status:<4}  {r.name:<{width}}  {r.detail}".rstrip())
        if r.status in (FAIL, WARN) and r.fix:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {r.fix}")
    counts = {s: sum(1 for r in results if r.status == s) for s in (OK, FAIL, WARN, SKIP)}
    verdict = "ready" if all_required_ok(results) else "NOT ready (a required check failed)"
    lines.append("")
    lines.append(f"{verdict}: {counts[OK]} ok, {counts[FAIL]} failed, "
                 f"{counts[WARN]} warnings, {counts[SKIP]} skipped")
    return "\n".join(lines)


def render_json(results: Sequence[CheckResult]) -> str:
    """`{"ok": bool, "checks": [...]}`, each check with its fields and status."""
    return json.dumps({"ok": all_required_ok(results), "checks": [r.to_dict() for r in results]},
                      indent=2)
