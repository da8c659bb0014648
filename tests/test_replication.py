"""Entities beyond the program's tables: packet replication entries and resources it has none of.

Through the entry store the server uses (no data plane: the program never replicates, so these
entries live in the control plane only). Codes follow BMv2 (PI): the same controller code gets
the same answers from either switch.
"""

from __future__ import annotations

import grpc
import pytest
from p4.v1 import p4runtime_pb2

from p4cf_kit.errors import P4RuntimeError
from p4cf_kit.paths import P4INFO_TXT
from p4cf_kit.switch.embedded.entries import EntryStore
from p4cf_kit.switch.embedded.p4info import P4Schema, load_p4info

Code = grpc.StatusCode
INSERT, MODIFY, DELETE = (p4runtime_pb2.Update.INSERT, p4runtime_pb2.Update.MODIFY,
                          p4runtime_pb2.Update.DELETE)


@pytest.fixture
def store() -> EntryStore:
    return EntryStore(P4Schema(load_p4info(P4INFO_TXT)))


def group(gid: int, *ports: int) -> p4runtime_pb2.Entity:
    e = p4runtime_pb2.Entity()
    g = e.packet_replication_engine_entry.multicast_group_entry
    g.multicast_group_id = gid
    for p in ports:
        g.replicas.add(egress_port=p, instance=0)
    return e


def session(sid: int, *ports: int, cos: int = 0) -> p4runtime_pb2.Entity:
    e = p4runtime_pb2.Entity()
    s = e.packet_replication_engine_entry.clone_session_entry
    s.session_id, s.class_of_service = sid, cos
    for p in ports:
        s.replicas.add(egress_port=p, instance=1)
    return e


def code_of(fn, *args) -> Code:
    with pytest.raises(P4RuntimeError) as info:
        result = fn(*args)
        if result is not None and not callable(result):
            list(result)
    return info.value.code


def test_multicast_groups_and_clone_sessions(store: EntryStore) -> None:
    undo: list = []
    assert list(store.read(group(0))) == [] and list(store.read(session(0))) == []
    store.write(INSERT, group(1, 2, 3), undo)
    store.write(INSERT, group(7, 4), undo)
    store.write(INSERT, session(5, 4), undo)
    assert [e.packet_replication_engine_entry.multicast_group_entry.multicast_group_id
            for e in store.read(group(0))] == [1, 7]
    (one,) = store.read(group(1))
    assert [r.egress_port for r in one.packet_replication_engine_entry.multicast_group_entry.replicas] == [2, 3]
    store.write(MODIFY, group(1, 5), undo)
    (one,) = store.read(group(1))
    assert [r.egress_port for r in one.packet_replication_engine_entry.multicast_group_entry.replicas] == [5]
    (s,) = store.read(session(0))
    assert s.packet_replication_engine_entry.clone_session_entry.session_id == 5
    assert code_of(store.write, INSERT, group(1, 2), undo) == Code.ALREADY_EXISTS
    assert code_of(store.write, INSERT, session(5, 2), undo) == Code.ALREADY_EXISTS
    assert code_of(store.write, DELETE, group(9), undo) == Code.NOT_FOUND
    assert code_of(store.write, MODIFY, session(9, 1), undo) == Code.NOT_FOUND
    assert code_of(store.read, group(9)) == Code.NOT_FOUND
    assert code_of(store.read, session(9)) == Code.NOT_FOUND
    # ids and replicas checked as BMv2 checks them
    assert code_of(store.write, INSERT, group(0, 1), undo) == Code.INVALID_ARGUMENT
    assert code_of(store.write, INSERT, group(1 << 15, 1), undo) == Code.OUT_OF_RANGE
    assert code_of(store.read, group(1 << 15)) == Code.OUT_OF_RANGE
    assert code_of(store.write, INSERT, group(2, 1, 1), undo) == Code.INVALID_ARGUMENT  # same replica twice
    assert code_of(store.write, INSERT, session(0, 1), undo) == Code.INVALID_ARGUMENT
    assert code_of(store.write, INSERT, session(1 << 15, 1), undo) == Code.INVALID_ARGUMENT
    assert code_of(store.write, INSERT, session(2, 1, cos=1), undo) == Code.UNIMPLEMENTED
    no_port = group(3)
    no_port.packet_replication_engine_entry.multicast_group_entry.replicas.add(instance=1)
    assert code_of(store.write, INSERT, no_port, undo) == Code.INVALID_ARGUMENT
    # a rolled-back batch restores what was there
    store.write(DELETE, group(7), undo)
    store.rollback(undo)
    assert list(store.read(group(0))) == [] and list(store.read(session(0))) == []


def test_resources_the_program_has_none_of(store: EntryStore) -> None:
    """Wildcard reads answer with nothing; naming one (or writing) says the program has none."""
    for kind in ("counter_entry", "meter_entry", "register_entry", "action_profile_member",
                 "action_profile_group", "value_set_entry", "digest_entry", "extern_entry",
                 "direct_meter_entry"):
        e = p4runtime_pb2.Entity()
        getattr(e, kind).SetInParent()
        assert list(store.read(e)) == [], kind
        assert code_of(store.write, MODIFY, e, []) == Code.INVALID_ARGUMENT, kind
    e = p4runtime_pb2.Entity()
    e.counter_entry.counter_id = 302000000
    assert code_of(store.read, e) == Code.NOT_FOUND
    e = p4runtime_pb2.Entity()
    e.direct_meter_entry.table_entry.table_id = store.schema.table_by_name("MyIngress.ecmp_nhop").id
    assert code_of(store.read, e) == Code.INVALID_ARGUMENT
