"""Refuse backend memory the machine cannot hold, before any server starts.

Why: a server that allocates more than the machine has is killed by the OOM killer in the
middle of bring-up (or, worse, takes other processes with it). A migration briefly needs
one more copy (the restored backend, and in stop-and-copy the images in the page cache),
so the check counts one copy per backend plus one, and a margin for everything else.
The same holds for the echo server's ballast and for redis's bulk data (apps/bulk.py sizes
its values so that redis holds N MiB of data in about N MiB: 3 % more, within the margin).
"""

from __future__ import annotations

from pathlib import Path

from p4cf_kit.errors import ConfigError

HEADROOM_MIB = 512


def available_mib(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemAvailable of this machine in MiB (the kernel's estimate of what can be allocated)."""
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    raise ConfigError(f"{meminfo} has no MemAvailable line; cannot check the backends' memory")


def check_memory_fits(memory_mib: int, backends: int, available: int | None = None) -> None:
    """ConfigError with the numbers when `backends` backends of `memory_mib` MiB each, plus one
    copy for a migration and HEADROOM_MIB, exceed the machine's available memory."""
    if memory_mib <= 0:
        return
    free = available_mib() if available is None else available
    need = memory_mib * (backends + 1) + HEADROOM_MIB
    if need > free:
        raise ConfigError(
            f"backend.memory_mib = {memory_mib}: {backends} backends plus one migrating copy need "
            f"{need} MiB ({memory_mib} x {backends + 1} + {HEADROOM_MIB} MiB headroom), but this machine "
            f"has {free} MiB available; lower backend.memory_mib (or --memory-mib) to at most "
            f"{max(0, (free - HEADROOM_MIB) // (backends + 1))}")


def check_ballast_held(server_log: str, ballast_mib: int, container: str) -> None:
    """ConfigError when a backend server that should hold `ballast_mib` MiB does not say so in
    its `listening` line (an image built before the ballast existed ignores the setting, and
    every measurement of memory would then be silently wrong)."""
    if ballast_mib <= 0:
        return
    for line in server_log.splitlines():
        words = line.split()
        if words[1:2] == ["listening"]:
            if f"ballast_mib={ballast_mib}" in words:
                return
            break
    raise ConfigError(f"{container} does not hold the {ballast_mib} MiB ballast backend.memory_mib asks for "
                      f"(its image predates it, or another checkout rebuilt it): run `p4cf images build`")
