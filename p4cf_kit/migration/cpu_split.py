"""While a migration's downtime lasts, it and the lab's other workloads run on different CPUs.

Why: at idle CPU priority (podman/idle_cpu.py) the migration's Podman, runc and CRIU give the
CPU up to a waking workload, but only at the kernel's next preemption point: on a kernel
without full preemption (PREEMPT_NONE, as on our VMs) a CRIU or runc inside a long system
call keeps the CPU until it returns. The untouched backends and the client then wait on the
run queue although nothing of theirs competes (a scheduler trace of the window: their waits
over 1 ms were spent behind idle-priority CRIU, runc and Podman, about 3 ms per migration each).
So from `prepare` to the switch the migration (the kit's own thread and what it starts, down
to the restored backend) runs on the first allowed CPU and the other containers of the lab
and its switch on the rest; both go back to every CPU afterwards. Measured
(benchmarks/migration_downtime.py, alternating runs): the untouched connections' extra reply
time p95 5.8 / 5.7 ms without, 2.9 / 1.8 ms with it, median 1.1-1.4 -> 0.2 ms; the moved
backend's gap grew (median 268-292 -> 321-322 ms), as its restore, idle too, shared the one
CPU with the dump's tail. So under a split the restore keeps normal priority (phases.prepare,
idle_restore): one more pair, p95 3.9 -> 1.6 ms, gap median 282 -> 247 ms.
README, "Connections a migration does not move". With one CPU nothing changes;
`P4CF_MIGRATION_SPLIT=0` turns it off.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ENV = "P4CF_MIGRATION_SPLIT"


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip() not in ("0", "no", "off", "false")


def process_tree(roots: Iterable[int]) -> list[int]:
    """`roots` and every process below them that runs now (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(entry.name))
    tree: list[int] = []
    todo = [r for r in roots if r > 0]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def set_cpus(pids: Iterable[int], cpus: set[int]) -> int:
    """Let every thread of processes `pids` run only on `cpus`; returns the threads changed
    (a thread or process that ended meanwhile is skipped)."""
    done = 0
    for pid in pids:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(tid, cpus)
                done += 1
            except OSError:
                pass
    return done


@dataclass
class CpuSplit:
    """One migration's split: `migration` CPUs for it, `others` for the lab's workloads."""

    migration: set[int]
    others: set[int]
    bystanders: list[int] = field(default_factory=list)   # process tree roots, moved to `others`
    released: bool = False

    @property
    def every(self) -> set[int]:
        return self.migration | self.others

    def join(self, pid: int | None) -> None:
        """Put one more process of the migration (a conmon started earlier) on its CPUs."""
        if pid:
            set_cpus([pid], self.migration)

    def release(self, moved: Iterable[int] = ()) -> None:
        """Every CPU again for the workloads, the kit's thread and the processes `moved` (the
        restored backend and its conmon, which inherited the migration's CPUs); once."""
        if self.released:
            return
        self.released = True
        os.sched_setaffinity(0, self.every)
        set_cpus(process_tree(self.bystanders), self.every)
        set_cpus(list(moved), self.every)


def split(bystanders: Iterable[int]) -> CpuSplit | None:
    """Start a split: the calling thread (and what it starts from now on) on the first CPU it
    may use, the process trees `bystanders` on the others; None when off or with one CPU."""
    allowed = os.sched_getaffinity(0)
    if not enabled() or len(allowed) < 2:
        return None
    first = {min(allowed)}
    out = CpuSplit(migration=first, others=allowed - first, bystanders=[b for b in bystanders if b > 0])
    set_cpus(process_tree(out.bystanders), out.others)
    os.sched_setaffinity(0, first)
    return out


def lab_workloads(lab_label: str, state: Path, skip: int) -> list[int]:
    """Main pids of the lab's running containers on this machine (but `skip`, the one that moves)
    and its switch's pid: one `podman ps`."""
    from p4cf_kit.podman.runner import podman
    from p4cf_kit.switch.state import read_state, state_file
    out = podman("ps", "--filter", f"label={lab_label}", "--format", "{{.Pid}}", check=False).stdout
    pids = [int(p) for p in out.split() if p.isdigit() and int(p) not in (0, skip)]
    switch = read_state(state_file(state))
    if switch is not None and switch.pid:
        pids.append(switch.pid)
    return pids


def container_processes(container: str) -> list[int]:
    """A container's main process and its conmon (the restored backend inherited the
    migration's CPUs from the restore): one `podman inspect`."""
    from p4cf_kit.podman.runner import podman
    out = podman("inspect", "--type", "container", "--format", "{{.State.Pid}} {{.State.ConmonPid}}",
                 container, check=False).stdout
    pids = [int(p) for p in out.split() if p.isdigit() and int(p) > 0]
    return process_tree(pids)
