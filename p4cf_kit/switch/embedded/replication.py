"""Packet-replication-engine entries: multicast groups and clone sessions, as the control plane sees them.

v1model has a packet replication engine whatever the program, so a controller may create,
modify, read and delete its groups and sessions (BMv2 accepts them all the same). Our
program never sets `mcast_grp` nor clones, so nothing here reaches the data plane: the store
only keeps what was written, so that reads (a controller's `delete_all`, a reconciliation)
return what is there. Validation and error codes follow BMv2 (PI's PRE managers): ids 0 are
invalid, multicast group ids from 2^15 and clone session ids from 2^15 are out of range,
a replica needs a port, the same replica may not appear twice, a non-zero class of service
is not implemented.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeAlias

import grpc
from p4.v1 import p4runtime_pb2

from p4cf_kit.errors import P4RuntimeError

Code = grpc.StatusCode
INSERT = p4runtime_pb2.Update.INSERT
MODIFY = p4runtime_pb2.Update.MODIFY
DELETE = p4runtime_pb2.Update.DELETE
FIRST_RESERVED_GROUP_ID = 1 << 15  # BMv2 keeps ids from here for clone sessions' own groups
MAX_CLONE_SESSION_ID = 1 << 15     # session ids are 1 .. 2^15 - 1

GroupEntry: TypeAlias = p4runtime_pb2.MulticastGroupEntry
SessionEntry: TypeAlias = p4runtime_pb2.CloneSessionEntry


def _check_replicas(replicas: Iterable[p4runtime_pb2.Replica], what: str) -> None:
    """Each replica names a port, and no (port, instance) pair appears twice."""
    seen: set[tuple[str, object, int]] = set()
    for replica in replicas:
        kind = replica.WhichOneof("port_kind")
        if kind is None:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, f"{what}: a replica has no port")
        pair = (kind, getattr(replica, kind), replica.instance)
        if pair in seen:
            raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                 f"{what}: replica (port {pair[1]!r}, instance {pair[2]}) given twice")
        seen.add(pair)


def _check_update_type(update_type: int) -> None:
    if update_type not in (INSERT, MODIFY, DELETE):
        raise P4RuntimeError(Code.INVALID_ARGUMENT, "the update type is not set"
                             if update_type == p4runtime_pb2.Update.UNSPECIFIED
                             else f"unknown update type {update_type}")


class ReplicationStore:
    """Multicast groups and clone sessions by id; not thread-safe (the server serialises calls)."""

    def __init__(self) -> None:
        self.groups: dict[int, GroupEntry] = {}
        self.sessions: dict[int, SessionEntry] = {}

    # --- writes ------------------------------------------------------------------------------

    def write(self, update_type: int,
              entry: p4runtime_pb2.PacketReplicationEngineEntry) -> Callable[[], None]:
        """Apply one update (nothing changes if it raises); returns how to undo it."""
        kind = entry.WhichOneof("type")
        if kind == "multicast_group_entry":
            group = entry.multicast_group_entry
            gid = group.multicast_group_id
            if gid == 0:
                raise P4RuntimeError(Code.INVALID_ARGUMENT, "multicast group id 0 is not valid")
            if gid >= FIRST_RESERVED_GROUP_ID:
                raise P4RuntimeError(Code.OUT_OF_RANGE,
                                     f"multicast group id {gid} is too high (max {FIRST_RESERVED_GROUP_ID - 1})")
            _check_update_type(update_type)
            if update_type != DELETE:
                _check_replicas(group.replicas, f"multicast group {gid}")
            return self._apply(self.groups, gid, update_type, group, f"multicast group {gid}")
        if kind == "clone_session_entry":
            session = entry.clone_session_entry
            sid = session.session_id
            if sid == 0:
                raise P4RuntimeError(Code.INVALID_ARGUMENT, "clone session id 0 is not valid")
            if sid >= MAX_CLONE_SESSION_ID:
                raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                     f"clone session id {sid} is out of range (1..{MAX_CLONE_SESSION_ID - 1})")
            _check_update_type(update_type)
            if update_type != DELETE:
                if session.class_of_service:
                    raise P4RuntimeError(Code.UNIMPLEMENTED,
                                         "class_of_service of clone sessions is not supported (use 0)")
                _check_replicas(session.replicas, f"clone session {sid}")
            return self._apply(self.sessions, sid, update_type, session, f"clone session {sid}")
        raise P4RuntimeError(Code.INVALID_ARGUMENT,
                             "packet_replication_engine_entry has neither a multicast group "
                             "nor a clone session")

    @staticmethod
    def _apply(table: dict[int, Any], key: int, update_type: int, message: Any, what: str) -> Callable[[], None]:
        previous = table.get(key)
        if update_type == INSERT and previous is not None:
            raise P4RuntimeError(Code.ALREADY_EXISTS, f"{what} already exists")
        if update_type != INSERT and previous is None:
            raise P4RuntimeError(Code.NOT_FOUND, f"{what} does not exist")
        if update_type == DELETE:
            del table[key]
        else:
            stored = type(message)()
            stored.CopyFrom(message)
            table[key] = stored

        def undo() -> None:
            if previous is None:
                table.pop(key, None)
            else:
                table[key] = previous
        return undo

    # --- reads -------------------------------------------------------------------------------

    def read(self, entry: p4runtime_pb2.PacketReplicationEngineEntry) -> Iterator[p4runtime_pb2.Entity]:
        """What a read filter selects: id 0 is every group (session), else the one named."""
        kind = entry.WhichOneof("type")
        if kind == "multicast_group_entry":
            gid = entry.multicast_group_entry.multicast_group_id
            if gid >= FIRST_RESERVED_GROUP_ID:
                raise P4RuntimeError(Code.OUT_OF_RANGE,
                                     f"multicast group id {gid} is too high (max {FIRST_RESERVED_GROUP_ID - 1})")
            yield from self._select(self.groups, gid, "multicast_group_entry", f"multicast group {gid}")
        elif kind == "clone_session_entry":
            sid = entry.clone_session_entry.session_id
            yield from self._select(self.sessions, sid, "clone_session_entry", f"clone session {sid}")
        else:
            raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                 "packet_replication_engine_entry has neither a multicast group "
                                 "nor a clone session")

    @staticmethod
    def _select(table: dict[int, Any], key: int, field: str, what: str) -> Iterator[p4runtime_pb2.Entity]:
        if key == 0:
            keys = sorted(table)
        elif key in table:
            keys = [key]
        else:
            raise P4RuntimeError(Code.NOT_FOUND, f"{what} does not exist")
        for k in keys:
            out = p4runtime_pb2.Entity()
            getattr(out.packet_replication_engine_entry, field).CopyFrom(table[k])
            yield out
