"""Attaching the fast path with a cls_bpf filter over rtnetlink, for kernels without tcx (< 6.6).

Debian 12's own kernel is 6.1: there the program goes in as a direct-action cls_bpf filter on a
clsact qdisc, as `tc filter add dev X ingress prio P handle H bpf da fd N` would, with the
messages packed here (uapi linux/rtnetlink.h, pkt_sched.h, pkt_cls.h), so no `tc` binary is
needed. Unlike a tcx link, such a filter outlives the process, so the kit removes it itself:
at stop, and at start in case a killed switch left one. The filter's priority and handle are the
kit's own (FILTER_PRIO, FILTER_HANDLE) and only that filter is ever deleted; the clsact qdisc
is deleted only when the kit created it.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

NETLINK_ROUTE = 0
RTM_NEWQDISC, RTM_DELQDISC, RTM_NEWTFILTER, RTM_DELTFILTER = 36, 37, 44, 45
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR = 2
TCA_KIND, TCA_OPTIONS = 1, 2
TCA_BPF_FD, TCA_BPF_NAME, TCA_BPF_FLAGS = 6, 7, 8
TCA_BPF_FLAG_ACT_DIRECT = 1
TC_H_CLSACT = 0xFFFFFFF1
CLSACT_HANDLE = 0xFFFF0000
INGRESS_PARENT = 0xFFFFFFF2           # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)
ETH_P_ALL_BE = socket.htons(0x0003)
FILTER_PRIO = 0x4CF                   # the kit's filter on the port
FILTER_HANDLE = 0x4CF

_NLMSG = struct.Struct("<IHHII")
_TCMSG = struct.Struct("<BBHiIII")


def _attr(kind: int, payload: bytes) -> bytes:
    data = struct.pack("<HH", 4 + len(payload), kind) + payload
    return data + bytes(-len(data) % 4)


class Rtnetlink:
    """One NETLINK_ROUTE socket (opened in the caller's netns) for the few tc requests."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, kind: int, flags: int, tcmsg: bytes, attrs: bytes = b"") -> int:
        """Send one request and return the kernel's answer: 0, or a positive errno."""
        self._seq += 1
        body = tcmsg + attrs
        self.sock.send(_NLMSG.pack(_NLMSG.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags,
                                   self._seq, 0) + body)
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + _NLMSG.size <= len(data):
                length, mtype, _, seq, _ = _NLMSG.unpack_from(data, off)
                if mtype == NLMSG_ERROR and seq == self._seq:
                    err: int = struct.unpack_from("<i", data, off + _NLMSG.size)[0]
                    return -err
                off += max(length + (-length % 4), _NLMSG.size)


def _tcmsg(ifindex: int, handle: int, parent: int, info: int = 0) -> bytes:
    return _TCMSG.pack(socket.AF_UNSPEC, 0, 0, ifindex, handle, parent, info)


def _filter_msg(ifindex: int) -> bytes:
    return _tcmsg(ifindex, FILTER_HANDLE, INGRESS_PARENT, (FILTER_PRIO << 16) | ETH_P_ALL_BE)


def detach_filter(nl: Rtnetlink, ifindex: int) -> bool:
    """Delete the kit's filter on `ifindex` if there is one; True when one was deleted."""
    err = nl.request(RTM_DELTFILTER, 0, _filter_msg(ifindex), _attr(TCA_KIND, b"bpf\0"))
    return err == 0


def attach_filter(nl: Rtnetlink, ifindex: int, prog_fd: int, name: str) -> bool:
    """Attach `prog_fd` as the kit's direct-action filter at `ifindex`'s ingress (a stale one
    left by a killed switch is replaced); returns whether the clsact qdisc was created here.
    OSError when the kernel refuses."""
    err = nl.request(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, _tcmsg(ifindex, CLSACT_HANDLE, TC_H_CLSACT),
                     _attr(TCA_KIND, b"clsact\0"))
    if err not in (0, errno.EEXIST):
        raise OSError(err, f"tc: cannot add a clsact qdisc on ifindex {ifindex}: {os.strerror(err)}")
    created = err == 0
    detach_filter(nl, ifindex)
    options = (_attr(TCA_BPF_FD, struct.pack("<I", prog_fd)) + _attr(TCA_BPF_NAME, name.encode() + b"\0")
               + _attr(TCA_BPF_FLAGS, struct.pack("<I", TCA_BPF_FLAG_ACT_DIRECT)))
    err = nl.request(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL, _filter_msg(ifindex),
                     _attr(TCA_KIND, b"bpf\0") + _attr(TCA_OPTIONS, options))
    if err:
        if created:
            remove_clsact(nl, ifindex)
        raise OSError(err, f"tc: cannot attach the fast path to ifindex {ifindex}: {os.strerror(err)}")
    return created


def remove_clsact(nl: Rtnetlink, ifindex: int) -> None:
    """Delete the clsact qdisc the kit created on `ifindex` (with whatever filters it holds)."""
    nl.request(RTM_DELQDISC, 0, _tcmsg(ifindex, CLSACT_HANDLE, TC_H_CLSACT))
