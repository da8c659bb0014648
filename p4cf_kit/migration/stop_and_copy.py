"""The stop-and-copy mode's hooks: none beyond the migration itself.

Why a module of its own: it is the base the other modes extend (precopy.py keeps its
no-op hooks from here), and modes.py imports every mode, so the base cannot live there.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from p4cf_kit.migration import phases
from p4cf_kit.migration.plan import MigrationPlan


@dataclass
class StopAndCopy:
    """Today's migration: all memory is in the images; the dump ends when the source exits."""

    plan: MigrationPlan

    def arm(self) -> None:
        return None

    def staged(self, staged: phases.StagedRestore) -> None:
        return None

    def wait_dumped(self, dump: subprocess.Popen[str], timeout: float) -> None:
        phases.wait_dumped(dump, self.plan.src_pid, timeout)

    def serve(self, staged: phases.StagedRestore, timeout: float) -> None:
        return None

    def complete(self, staged: phases.StagedRestore, dump: subprocess.Popen[str] | None,
                 timeout: float) -> None:
        return None

    def source_held(self) -> bool:
        return False

    def stop_source(self) -> None:
        return None

    def close(self) -> None:
        return None
