"""Migration modes: how a backend's memory reaches the destination.

  stop-and-copy  every page is written while the backend is frozen and read back at the
                 restore: the downtime grows with the resident size (phases.py).
  lazy           the restore resumes the backend at once and its pages follow on demand
                 (CRIU lazy migration over userfaultfd, lazy.py; across machines
                 lazy_across.py): the downtime no longer carries the memory, the first
                 touches of each page pay a round trip.
  pre-copy       iterative pre-dumps while the backend runs, then a short final dump of what
                 changed (precopy.py). It needs the kernel to track dirty pages (soft-dirty);
                 the kit refuses it, with the reason, where the kernel does not.

`transfer_for(mode, plan)` gives the migration the hooks of its mode (a MemoryTransfer):
migrate.py calls them at fixed points and stays one procedure for every mode.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from dataclasses import dataclass
from typing import Protocol

from p4cf_kit.checkpoint.criu import has_feature
from p4cf_kit.config import MIGRATION_MODES
from p4cf_kit.errors import ConfigError
from p4cf_kit.migration import phases
from p4cf_kit.migration.lazy import LazyTransfer
from p4cf_kit.migration.plan import MigrationPlan
from p4cf_kit.migration.precopy import PreCopyTransfer
from p4cf_kit.migration.stop_and_copy import StopAndCopy

MODES = MIGRATION_MODES
DEFAULT_MODE = "stop-and-copy"
UFFD_FEATURE = "uffd-noncoop"          # criu check --feature: userfaultfd with non-cooperative events
DIRTY_FEATURE = "mem_dirty_track"      # criu check --feature: soft-dirty page tracking


@dataclass(frozen=True)
class ModeSupport:
    """Whether `mode` can run on this machine, and if not, why (for doctor and refusals)."""

    mode: str
    available: bool
    reason: str


@functools.cache
def support(mode: str) -> ModeSupport:
    """Ask CRIU (once per process) whether this kernel carries what `mode` needs."""
    kernel = f"Linux {platform.release()}"
    if mode == "stop-and-copy":
        return ModeSupport(mode, True, "needs nothing beyond a migration")
    if mode == "lazy":
        if has_feature(UFFD_FEATURE):
            return ModeSupport(mode, True, f"userfaultfd with non-cooperative events ({kernel})")
        return ModeSupport(mode, False, f"this kernel ({kernel}) lacks userfaultfd with non-cooperative events "
                                        f"(`criu check --feature {UFFD_FEATURE}` fails); Linux >= 4.11 with "
                                        "CONFIG_USERFAULTFD has it")
    if mode == "pre-copy":
        if has_feature(DIRTY_FEATURE):
            return ModeSupport(mode, True, f"soft-dirty page tracking ({kernel})")
        return ModeSupport(mode, False, f"this kernel ({kernel}) does not track dirty pages (soft-dirty, "
                                        f"CONFIG_MEM_SOFT_DIRTY; `criu check --feature {DIRTY_FEATURE}` fails), "
                                        "which iterative pre-dumps need")
    raise ConfigError(f"migration mode {mode!r}: use one of {', '.join(MODES)}")


def require(mode: str) -> None:
    """ConfigError naming the reason and the alternatives when `mode` cannot run here."""
    found = support(mode)
    if not found.available:
        others = ", ".join(m for m in MODES if m != mode and support(m).available)
        raise ConfigError(f"migration mode {mode!r} is refused: {found.reason}. Use --mode {others or DEFAULT_MODE}")


class MemoryTransfer(Protocol):
    """The hooks a mode adds to a migration (migrate.py calls them in this order)."""

    def arm(self) -> None: ...
    def staged(self, staged: phases.StagedRestore) -> None: ...
    def wait_dumped(self, dump: subprocess.Popen[str], timeout: float) -> None: ...
    def serve(self, staged: phases.StagedRestore, timeout: float) -> None: ...
    def complete(self, staged: phases.StagedRestore, dump: subprocess.Popen[str] | None,
                 timeout: float) -> None: ...
    def source_held(self) -> bool: ...
    def stop_source(self) -> None: ...
    def close(self) -> None: ...


def transfer_for(mode: str, plan: MigrationPlan) -> MemoryTransfer:
    """The hooks of `mode` for a migration within one machine; ConfigError when the mode cannot
    run here or not for this migration (lazy between hosts of another machine: its page server
    and daemon would both be there, which only a migration across machines drives)."""
    require(mode)
    if mode == "stop-and-copy":
        return StopAndCopy(plan)
    if plan.across_machines or not plan.src_machine.is_local:
        where = ("are on different machines" if plan.across_machines
                 else f"both run on machine {plan.src_machine.name!r}")
        raise ConfigError(f"migration mode {mode!r} between hosts of one machine runs on this machine only (its "
                          f"page server and lazy-pages daemon, or its pre-dump rounds, are local); {plan.src.name} and "
                          f"{plan.dst.name} {where}: use --mode stop-and-copy")
    if mode == "pre-copy":
        return PreCopyTransfer(plan)
    return LazyTransfer(plan)


def require_across(mode: str, plan: MigrationPlan) -> StopAndCopy:
    """Check `mode` for a migration across machines (stop-and-copy: across.py; lazy:
    lazy_across.py, which drives its own page transfer); ConfigError naming the reason when it
    cannot run. Returns the (idle) hooks of a stop-and-copy, which both leave unused."""
    require(mode)
    if mode not in ("stop-and-copy", "lazy"):
        raise ConfigError(f"migration mode {mode!r} does not run across machines ({plan.src.name} and "
                          f"{plan.dst.name} are on different machines): use --mode stop-and-copy or lazy")
    return StopAndCopy(plan)
