"""Which CPU the switch's control plane runs on (`--control-cpu`), and the pinning itself.

One P4Runtime call is handed four times between threads (gRPC's poller, its completion-queue
thread, a Python worker) that take turns on the GIL, so a second CPU adds no capacity to the
control plane, only cross-CPU wake-ups and GIL contention: 150-250 us of a ~1 ms Write on the
kit's 2-CPU VM. So the switch keeps gRPC and its Python threads on one CPU and the data plane
thread on the others. Threads inherit their creator's CPUs, which is how the pinning spreads.
"""

from __future__ import annotations

import os

from p4cf_kit.errors import SwitchError


def control_plane_cpu(spec: str, allowed: set[int]) -> int | None:
    """The CPU `--control-cpu SPEC` keeps the control plane on, or None (no pinning).

    "auto" picks the highest CPU the process may use, unless it may use only one; "none"
    never pins; a number must be one of `allowed`.
    """
    if spec == "none":
        return None
    if spec == "auto":
        return max(allowed) if len(allowed) > 1 else None
    if not spec.isdigit() or int(spec) not in allowed:
        raise SwitchError(f"--control-cpu {spec}: not one of the CPUs this process may use "
                          f"({', '.join(map(str, sorted(allowed)))}), 'auto' or 'none'")
    return int(spec)


def avoid_cpu(cpu: int) -> None:
    """Keep the calling thread, and the threads it starts from now on, off `cpu` (unless that
    is the only CPU it may use): done before starting the data plane thread."""
    others = os.sched_getaffinity(0) - {cpu}
    if others:
        os.sched_setaffinity(0, others)


def pin_to_cpu(cpu: int) -> None:
    """Keep the calling thread, and the threads it starts from now on, on `cpu` only: done
    before starting gRPC, whose threads start the Python workers."""
    os.sched_setaffinity(0, {cpu})
