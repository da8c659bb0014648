"""A migration's own work runs at idle CPU priority, so the backends it does not move keep theirs.

Why: the connections a migration does not move slow down during it because their server and
the client wait for a CPU. In a 0.3 s migration window (benchmarks/bystander_suspects.py, this
2-core VM) h3's server was ready to run but not running for 33-123 ms and the client for
119-248 ms, against 5-12 ms and 11-15 ms in a quiet 0.3 s; a P4Runtime write or the ICMP nudge
alone changed nothing. Where that work runs, the kit's nice values cannot reach: the kit's
session (its autogroup, or its systemd scope), conmon's cgroup, and for a restore the landing
container's own cgroup, where runc puts CRIU. So the cgroup gets the priority:
  - the migration's `podman container checkpoint` and `restore` start in the kit's cgroup
    `p4cf-migration` (cpu.idle = 1), with the dump's runc and CRIU below them; the restore's
    runc, which conmon starts, joins it from the kit's runtime script (restore_gate.py);
  - the restoring CRIU, in the landing container's cgroup, makes that cgroup idle at
    pre-restore and normal again at pre-resume, before the backend runs (the kit's CRIU
    action script, checkpoint/runc_conf.py). Not while the migration has CPUs of its own
    (migration/cpu_split.py): there the restore would only lose time to the dump's tail.
  - the source container's conmon joins the group just before the dump: when the container
    stops, conmon starts Podman's exit command (`podman container cleanup`, about 50 ms of
    CPU inside the downtime), which ran in the pod's conmon cgroup at normal priority. It
    leaves with conmon (the source is removed after the switch; a dump that fails before
    the container stops leaves that conmon here, at idle priority, harmless).
An idle cgroup gets a CPU whenever nothing else wants one, and a waking task of any other
cgroup preempts it. Measured against the same migrations without it (same run, interleaved,
three runs): untouched connections' extra reply time p95 11.3 -> 7.8, 9.0 -> 7.6 and
6.0 -> 5.3 ms, the migration's own window unchanged (311 -> 307, 354 -> 350, 284 -> 286 ms).
With the restore's runc in the group too: 5.5 -> 4.3 ms (max 23.3 -> 8.5 ms). The servers
still wait for a CPU (README, "Connections a migration does not move").

`P4CF_MIGRATION_IDLE=0` turns this off (for comparison: benchmarks/bystander_suspects.py).
Without a cgroup cpu controller with cpu.idle (Linux < 5.15) the work runs as before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV = "P4CF_MIGRATION_IDLE"
GROUP = "p4cf-migration"
MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class CpuHierarchy:
    """Where the cgroup cpu controller is mounted, and whether it is cgroup v1 (a hierarchy of
    its own, `N:cpu,...:/path` in /proc/PID/cgroup) or v2 (`0::/path`)."""

    root: Path
    v1: bool


def cpu_hierarchy(mountinfo: Path = MOUNTINFO) -> CpuHierarchy | None:
    """The cpu controller's mount, or None when there is none with cpu.idle."""
    for line in mountinfo.read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        point, fstype, options = Path(fields[4]), fields[sep + 1], fields[sep + 3].split(",")
        if fstype == "cgroup" and "cpu" in options and (point / "cpu.idle").exists():
            return CpuHierarchy(point, v1=True)
        if fstype == "cgroup2" and "cpu" in _read(point / "cgroup.subtree_control").split():
            return CpuHierarchy(point, v1=False)
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip() not in ("0", "no", "off", "false")


def idle_group(hierarchy: CpuHierarchy | None = None) -> Path | None:
    """The kit's idle cgroup (made and marked idle if needed), or None when off or impossible."""
    if not enabled():
        return None
    hierarchy = hierarchy or cpu_hierarchy()
    if hierarchy is None:
        return None
    group = hierarchy.root / GROUP
    try:
        group.mkdir(exist_ok=True)
        if _read(group / "cpu.idle").strip() != "1":
            (group / "cpu.idle").write_text("1\n")
    except OSError:
        return None
    return group


def in_idle_group(group: Path | None) -> list[str]:
    """The prefix that starts a command inside `group` (what it starts stays there), or none."""
    if group is None:
        return []
    return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(group / "cgroup.procs")]


def conmon_of(pid: int) -> int | None:
    """The conmon that watches a container whose main process is `pid` (its parent: conmon is
    the container's subreaper), or None when `pid` is gone or its parent is something else."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        comm = Path(f"/proc/{ppid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    return ppid if comm == "conmon" else None


def move_into(group: Path | None, pid: int | None) -> bool:
    """Move process `pid` (what it starts later follows it) into `group`; False when either is
    missing or the move failed (a process that just exited)."""
    if group is None or pid is None:
        return False
    try:
        (group / "cgroup.procs").write_text(f"{pid}\n")
    except OSError:
        return False
    return True


def hook_lines(hierarchy: CpuHierarchy | None) -> str:
    """Shell for the CRIU action script: `idle VALUE` writes cpu.idle of CRIU's (its parent's)
    cgroup, only when that cgroup is the container's (its path names the container id $id)."""
    if hierarchy is None:
        return "idle() { :; }\n"
    pick = "$2 ~ /(^|,)cpu(,|$)/" if hierarchy.v1 else '$1 == "0"'
    return (f"idle() {{\n"
            f"  cg=$(awk -F: '{pick} {{print $3; exit}}' /proc/$PPID/cgroup)\n"
            f"  [ -n \"$id\" ] && case \"$cg\" in\n"
            f"    *\"$id\"*) echo \"$1\" > \"{hierarchy.root}$cg/cpu.idle\" 2>/dev/null ;;\n"
            f"  esac\n"
            f"}}\n")
