"""The fast path as a cls_bpf filter, for kernels without tcx (< 6.6), over netlink (pyroute2).

Debian 12's own kernel is 6.1: there the program goes in as a direct-action cls_bpf filter on
a clsact qdisc, as `tc filter add dev X ingress prio P handle H bpf da fd N` would. Unlike a
tcx link, such a filter outlives the process, so the kit removes it itself: at stop, and at
start in case a killed switch left one. The filter's priority and handle are the kit's own
(FILTER_PRIO, FILTER_HANDLE) and only that filter is ever deleted; the clsact qdisc is
deleted only when the kit created it. Each call opens its own netlink socket in the caller's
network namespace (run it through `call_in_netns`).
"""

from __future__ import annotations

import errno

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

FILTER_PRIO = 0x4CF                   # the kit's filter on the port
FILTER_HANDLE = 0x4CF
INGRESS_PARENT = 0xFFFFFFF2           # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)


def _filter(ipr: IPRoute, command: str, ifindex: int, **extra: object) -> None:
    ipr.tc(command, "bpf", index=ifindex, handle=FILTER_HANDLE, parent=INGRESS_PARENT,
           prio=FILTER_PRIO, **extra)


def _remove_filter(ipr: IPRoute, ifindex: int) -> bool:
    try:
        _filter(ipr, "del-filter", ifindex)
    except NetlinkError as exc:
        if exc.code in (errno.ENOENT, errno.EINVAL):  # no such filter (EINVAL: no clsact)
            return False
        raise
    return True


def remove_filter(ifindex: int) -> bool:
    """Delete the kit's filter on `ifindex` if there is one; True when one was deleted."""
    with IPRoute() as ipr:
        return _remove_filter(ipr, ifindex)


def add_filter(ifindex: int, prog_fd: int, name: str) -> bool:
    """Attach `prog_fd` as the kit's direct-action filter at `ifindex`'s ingress (a stale one
    left by a killed switch is replaced); returns whether the clsact qdisc was created here.
    OSError when the kernel refuses."""
    with IPRoute() as ipr:
        try:
            ipr.tc("add", "clsact", index=ifindex)
            created = True
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise OSError(exc.code, f"tc: cannot add a clsact qdisc on ifindex {ifindex}: "
                                        f"{exc}") from exc
            created = False
        try:
            _remove_filter(ipr, ifindex)
            _filter(ipr, "add-filter", ifindex, fd=prog_fd, name=name, direct_action=True)
        except NetlinkError as exc:
            if created:
                ipr.tc("del", "clsact", index=ifindex)
            raise OSError(exc.code, f"tc: cannot attach the fast path to ifindex {ifindex}: "
                                    f"{exc}") from exc
    return created


def remove_clsact(ifindex: int) -> None:
    """Delete the clsact qdisc the kit created on `ifindex` (with whatever filters it holds)."""
    with IPRoute() as ipr:
        try:
            ipr.tc("del", "clsact", index=ifindex)
        except NetlinkError as exc:
            if exc.code not in (errno.ENOENT, errno.EINVAL):
                raise
