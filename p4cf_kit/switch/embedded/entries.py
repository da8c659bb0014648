"""The table-entry store: what a P4Runtime client sees of the three tables, and their validation.

The store owns the P4Runtime-visible state (canonical TableEntry messages, default entries,
direct counters when there is no data plane) and checks every update as the P4Runtime spec
asks, with the spec's error codes. Accepted changes are pushed as plain ints to the data
plane (`LoadBalancerPipeline`, see `DataPlaneTables`), which never sees protobuf.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from p4.v1 import p4runtime_pb2

from p4cf_kit.errors import P4RuntimeError
from p4cf_kit.switch.embedded.p4info import (
    EXACT,
    LPM,
    SCOPE_DEFAULT_ONLY,
    SCOPE_TABLE_ONLY,
    ActionInfo,
    P4Schema,
    TableInfo,
)
from p4cf_kit.switch.embedded.p4values import decode, encode
from p4cf_kit.switch.embedded.replication import ReplicationStore

Code = grpc.StatusCode
INSERT = p4runtime_pb2.Update.INSERT
MODIFY = p4runtime_pb2.Update.MODIFY
DELETE = p4runtime_pb2.Update.DELETE

# The program's `default_action` of each table (P4Info does not carry it); tests/test_p4info.py
# checks these against p4/load_balance.p4.
PROGRAM_DEFAULT_ACTIONS: dict[str, str] = {
    "MyIngress.ecmp_group": "MyIngress.drop",
    "MyIngress.ecmp_nhop": "MyIngress.drop",
    "MyEgress.send_frame": "MyEgress.drop",
}


class DataPlaneTables(Protocol):
    """The data plane's side of the contract (implemented by `pipeline.LoadBalancerPipeline`)."""

    def set_ecmp_group(self, prefix: int, prefix_len: int, action: str, params: dict[str, int]) -> None: ...
    def del_ecmp_group(self, prefix: int, prefix_len: int) -> None: ...
    def set_ecmp_group_default(self, action: str, params: dict[str, int]) -> None: ...
    def set_ecmp_nhop(self, select: int, action: str, params: dict[str, int]) -> None: ...
    def del_ecmp_nhop(self, select: int) -> None: ...
    def set_ecmp_nhop_default(self, action: str, params: dict[str, int]) -> None: ...
    def set_send_frame(self, port: int, action: str, params: dict[str, int]) -> None: ...
    def del_send_frame(self, port: int) -> None: ...
    def set_send_frame_default(self, action: str, params: dict[str, int]) -> None: ...
    def nhop_counter(self, select: int) -> tuple[int, int]: ...
    def set_nhop_counter(self, select: int, packets: int, bytes_: int) -> None: ...
    def clear(self) -> None: ...


# A key is one (value, prefix_len) pair per match field, in P4Info field order; exact fields
# use their bitwidth as prefix_len so that every key is a tuple of ints.
Key = tuple[tuple[int, int], ...]

# One FieldMatch as plain values: (field_id, the set member of its oneof or None, value,
# prefix_len). `value`/`prefix_len` are those of `exact`/`lpm`; other kinds are refused anyway.
Match = tuple[int, str | None, bytes, int]


class EntryFields:
    """A TableEntry as the plain values its validation reads.

    Decoded once, from a protobuf message (`from_message`) or straight from the wire (the
    server's Write path): with pure-Python protobuf, message getters cost more than the checks.
    """

    __slots__ = ("table_id", "match", "has_action", "action_kind", "action_id", "params",
                 "priority", "controller_metadata", "metadata", "is_default_action",
                 "idle_timeout_ns", "has_meter", "counter")

    def __init__(self) -> None:
        self.table_id = 0
        self.match: list[Match] = []
        self.has_action = False
        self.action_kind: str | None = None  # the set member of TableAction's oneof
        self.action_id = 0
        self.params: list[tuple[int, bytes]] = []  # (param_id, value) as sent
        self.priority = 0
        self.controller_metadata = 0
        self.metadata = b""
        self.is_default_action = False
        self.idle_timeout_ns = 0
        self.has_meter = False  # meter_config or meter_counter_data is set
        self.counter: tuple[int, int] | None = None  # counter_data (packets, bytes) when set

    @classmethod
    def from_message(cls, te: p4runtime_pb2.TableEntry) -> EntryFields:
        f = cls()
        f.table_id = te.table_id
        f.match = match_values(te)
        f.has_action = te.HasField("action")
        if f.has_action:
            f.action_kind = te.action.WhichOneof("type")
            if f.action_kind == "action":
                f.action_id = te.action.action.action_id
                f.params = [(p.param_id, p.value) for p in te.action.action.params]
        f.priority = te.priority
        f.controller_metadata = te.controller_metadata
        f.metadata = te.metadata
        f.is_default_action = te.is_default_action
        f.idle_timeout_ns = te.idle_timeout_ns
        f.has_meter = te.HasField("meter_config") or te.HasField("meter_counter_data")
        if te.HasField("counter_data"):
            f.counter = (te.counter_data.packet_count, te.counter_data.byte_count)
        return f


def match_values(te: p4runtime_pb2.TableEntry) -> list[Match]:
    """The match of a TableEntry message as `Match` tuples."""
    out: list[Match] = []
    for fm in te.match:
        kind = fm.WhichOneof("field_match_type")
        if kind == "exact":
            out.append((fm.field_id, kind, fm.exact.value, 0))
        elif kind == "lpm":
            out.append((fm.field_id, kind, fm.lpm.value, fm.lpm.prefix_len))
        else:
            out.append((fm.field_id, kind, b"", 0))
    return out


def action_message(action: ActionInfo, params: dict[str, int]) -> p4runtime_pb2.Action:
    """The canonical Action message (params in P4Info order, canonical bytestrings)."""
    msg = p4runtime_pb2.Action(action_id=action.id)
    for p in action.params:
        msg.params.add(param_id=p.id, value=encode(params[p.name]))
    return msg


@dataclass
class StoredEntry:
    """One installed entry. Its Read message is built on first read, not on write: with
    pure-Python protobuf, building messages is most of a write's cost."""

    info: TableInfo
    key: Key
    action: ActionInfo
    params: dict[str, int]
    priority: int = 0
    controller_metadata: int = 0
    metadata: bytes = b""
    counter: list[int] = field(default_factory=lambda: [0, 0])  # used without a data plane
    _message: p4runtime_pb2.TableEntry | None = None

    def message(self) -> p4runtime_pb2.TableEntry:
        """The canonical TableEntry (match sorted by field id, no counter_data)."""
        if self._message is None:
            msg = p4runtime_pb2.TableEntry(table_id=self.info.id, priority=self.priority,
                                           controller_metadata=self.controller_metadata,
                                           metadata=self.metadata)
            msg.match.extend(self.match())
            msg.action.action.CopyFrom(action_message(self.action, self.params))
            self._message = msg
        return self._message

    def match(self) -> list[p4runtime_pb2.FieldMatch]:
        out = []
        for mf, (value, plen) in zip(self.info.match_fields, self.key):
            fm = p4runtime_pb2.FieldMatch(field_id=mf.id)
            if mf.match_type == LPM:
                if plen == 0:
                    continue  # don't care: omitted, as the client sent it
                fm.lpm.value, fm.lpm.prefix_len = encode(value), plen
            else:
                fm.exact.value = encode(value)
            out.append(fm)
        return out


@dataclass
class DefaultEntry:
    action: ActionInfo
    params: dict[str, int]


@dataclass
class TableBinding:
    """How one table reaches the data plane: key ints -> pipeline calls."""

    set: Callable[[Key, str, dict[str, int]], None]
    delete: Callable[[Key], None]
    set_default: Callable[[str, dict[str, int]], None]
    read_counter: Callable[[Key], tuple[int, int]] | None = None
    write_counter: Callable[[Key, int, int], None] | None = None


def bind_pipeline(pipeline: DataPlaneTables) -> dict[str, TableBinding]:
    """The table name -> data plane calls map for the load balancer program."""
    p = pipeline
    return {
        "MyIngress.ecmp_group": TableBinding(
            set=lambda k, a, prm: p.set_ecmp_group(k[0][0], k[0][1], a, prm),
            delete=lambda k: p.del_ecmp_group(k[0][0], k[0][1]),
            set_default=p.set_ecmp_group_default),
        "MyIngress.ecmp_nhop": TableBinding(
            set=lambda k, a, prm: p.set_ecmp_nhop(k[0][0], a, prm),
            delete=lambda k: p.del_ecmp_nhop(k[0][0]),
            set_default=p.set_ecmp_nhop_default,
            read_counter=lambda k: p.nhop_counter(k[0][0]),
            write_counter=lambda k, pk, by: p.set_nhop_counter(k[0][0], pk, by)),
        "MyEgress.send_frame": TableBinding(
            set=lambda k, a, prm: p.set_send_frame(k[0][0], a, prm),
            delete=lambda k: p.del_send_frame(k[0][0]),
            set_default=p.set_send_frame_default),
    }


@dataclass
class TableState:
    info: TableInfo
    entries: dict[Key, StoredEntry]
    default: DefaultEntry
    binding: TableBinding | None


# An undo record: (table id, key or None for the default entry, previous value or None), or
# a function that undoes a change outside the tables (packet replication entries).
Undo = tuple[int, Key | None, StoredEntry | DefaultEntry | None] | Callable[[], None]

# Entities of resources the program declares none of: (the field that names the resource,
# what it is called in messages). Reads of all of them return nothing; naming one is an error.
ABSENT_RESOURCES: dict[str, tuple[str, str]] = {
    "counter_entry": ("counter_id", "indirect counter"),
    "meter_entry": ("meter_id", "indirect meter"),
    "register_entry": ("register_id", "register"),
    "action_profile_member": ("action_profile_id", "action profile"),
    "action_profile_group": ("action_profile_id", "action profile"),
    "value_set_entry": ("value_set_id", "value set"),
    "digest_entry": ("digest_id", "digest"),
    "extern_entry": ("extern_type_id", "extern"),
}


class EntryStore:
    """All table entries of one pipeline; not thread-safe (the server serialises calls)."""

    def __init__(self, schema: P4Schema, pipeline: DataPlaneTables | None = None) -> None:
        self.schema = schema
        self.pipeline = pipeline
        bindings = bind_pipeline(pipeline) if pipeline is not None else {}
        self.replication = ReplicationStore()
        self.tables: dict[int, TableState] = {}
        for info in schema.tables.values():
            self.tables[info.id] = TableState(info, {}, self._program_default(info),
                                              bindings.get(info.name))
        if pipeline is not None:
            pipeline.clear()

    # --- writes ------------------------------------------------------------------------------

    def write(self, update_type: int, entity: p4runtime_pb2.Entity | EntryFields,
              undo: list[Undo]) -> None:
        """Apply one update; raises P4RuntimeError (nothing changed) or appends to `undo`.

        `entity` is an Entity message, or the table entry it holds already as `EntryFields`.
        """
        if isinstance(entity, EntryFields):
            self._write_table_entry(update_type, entity, undo)
            return
        kind = entity.WhichOneof("entity")
        if kind == "table_entry":
            self._write_table_entry(update_type, EntryFields.from_message(entity.table_entry), undo)
        elif kind == "direct_counter_entry":
            self._write_direct_counter(update_type, entity.direct_counter_entry)
        elif kind == "packet_replication_engine_entry":
            undo.append(self.replication.write(update_type, entity.packet_replication_engine_entry))
        elif kind == "direct_meter_entry":
            self._direct_meter_table(entity.direct_meter_entry, write=True)
        elif kind in ABSENT_RESOURCES:
            self._absent_resource(kind, getattr(entity, kind), write=True)
        elif kind is None:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, "update has no entity")
        else:
            raise P4RuntimeError(Code.UNIMPLEMENTED, f"{kind} is not supported by this switch")

    def rollback(self, undo: list[Undo]) -> None:
        """Undo accepted updates in reverse order (ROLLBACK_ON_ERROR), data plane included."""
        for record in reversed(undo):
            if callable(record):
                record()
                continue
            table_id, key, previous = record
            state = self.tables[table_id]
            if key is None:
                assert isinstance(previous, DefaultEntry)
                state.default = previous
                if state.binding:
                    state.binding.set_default(previous.action.short_name, previous.params)
            elif previous is None:
                state.entries.pop(key, None)
                if state.binding:
                    state.binding.delete(key)
            else:
                assert isinstance(previous, StoredEntry)
                was_deleted = key not in state.entries
                state.entries[key] = previous
                if state.binding:
                    state.binding.set(key, previous.action.short_name, previous.params)
                    if was_deleted and state.binding.write_counter:  # a re-insert starts at 0
                        state.binding.write_counter(key, previous.counter[0], previous.counter[1])

    def _write_table_entry(self, update_type: int, te: EntryFields, undo: list[Undo]) -> None:
        if te.table_id == 0:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, "table_id is required in a write")
        state = self._table(te.table_id)
        info = state.info
        if te.has_meter:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, f"{info.name} has no direct meter")
        if te.counter is not None and not info.direct_counter_id:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, f"{info.name} has no direct counter")
        if te.idle_timeout_ns:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, f"{info.name} does not support idle timeout")
        if te.is_default_action:
            self._write_default(update_type, state, te, undo)
            return
        key = self._key(info, te.match)
        if te.priority and not info.needs_priority:
            raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                 f"{info.name} has no ternary/range/optional field: priority must be 0")
        existing = state.entries.get(key)
        binding = state.binding
        if update_type == DELETE:
            if existing is None:
                raise P4RuntimeError(Code.NOT_FOUND, f"{info.name}: no such entry to delete")
            if binding:  # data plane first: if it refuses, nothing has changed
                if binding.read_counter:  # kept so that a rollback can restore it
                    existing.counter = list(binding.read_counter(key))
                binding.delete(key)
            del state.entries[key]
            undo.append((info.id, key, existing))
            return
        if update_type == MODIFY:
            if existing is None:
                raise P4RuntimeError(Code.NOT_FOUND, f"{info.name}: no such entry to modify")
        elif update_type == INSERT:
            if existing is not None:
                raise P4RuntimeError(Code.ALREADY_EXISTS, f"{info.name}: entry already exists")
            if len(state.entries) >= info.size > 0:
                raise P4RuntimeError(Code.RESOURCE_EXHAUSTED, f"{info.name} is full ({info.size} entries)")
        else:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, f"unknown update type {update_type}")
        action, params = self._action(info, te, default=False)
        if te.counter is not None:
            counter = list(te.counter)
        else:
            counter = list(existing.counter) if existing is not None else [0, 0]
        if binding:  # data plane first: if it refuses, nothing has changed
            binding.set(key, action.short_name, params)
            if binding.write_counter and (update_type == INSERT or te.counter is not None):
                binding.write_counter(key, counter[0], counter[1])
        state.entries[key] = StoredEntry(info, key, action, params, te.priority,
                                         te.controller_metadata, te.metadata, counter)
        undo.append((info.id, key, existing))

    def _write_default(self, update_type: int, state: TableState, te: EntryFields,
                       undo: list[Undo]) -> None:
        info = state.info
        if update_type != MODIFY:
            raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                 f"{info.name}: the default entry can only be modified")
        if te.match or te.priority:
            raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                 f"{info.name}: a default entry has no match and no priority")
        if info.const_default_action_id:
            raise P4RuntimeError(Code.PERMISSION_DENIED, f"{info.name}: the default action is const")
        if te.counter is not None:
            raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                 f"{info.name}: a miss is not counted; the default entry has no counter")
        if te.has_action:
            action, params = self._action(info, te, default=True)
            new = DefaultEntry(action, params)
        else:  # spec: MODIFY without an action resets the default entry to the program's
            new = self._program_default(info)
        if state.binding:
            state.binding.set_default(new.action.short_name, new.params)
        undo.append((info.id, None, state.default))
        state.default = new

    def _write_direct_counter(self, update_type: int, dce: p4runtime_pb2.DirectCounterEntry) -> None:
        if update_type != MODIFY:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, "direct counter entries can only be modified")
        state, entry = self._counter_target(dce.table_entry)
        packets, bytes_ = dce.data.packet_count, dce.data.byte_count
        entry.counter = [packets, bytes_]
        if state.binding and state.binding.write_counter:
            state.binding.write_counter(entry.key, packets, bytes_)

    # --- reads -------------------------------------------------------------------------------

    def read(self, entity: p4runtime_pb2.Entity) -> Iterator[p4runtime_pb2.Entity]:
        """The entities matching a read filter (wildcards: unset table_id, unset match)."""
        kind = entity.WhichOneof("entity")
        if kind == "table_entry":
            yield from self._read_table_entries(entity.table_entry)
        elif kind == "direct_counter_entry":
            yield from self._read_direct_counters(entity.direct_counter_entry)
        elif kind == "packet_replication_engine_entry":
            yield from self.replication.read(entity.packet_replication_engine_entry)
        elif kind == "direct_meter_entry":
            self._direct_meter_table(entity.direct_meter_entry, write=False)  # none: nothing to yield
        elif kind in ABSENT_RESOURCES:
            self._absent_resource(kind, getattr(entity, kind), write=False)
        elif kind is None:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, "read entity has no type")
        else:
            raise P4RuntimeError(Code.UNIMPLEMENTED, f"{kind} is not supported by this switch")

    @staticmethod
    def _absent_resource(kind: str, message: Any, write: bool) -> None:
        """An entity of a resource kind the program has none of: a wildcard read finds nothing;
        naming a resource (or writing) is an error that says the program has no such thing."""
        id_field, what = ABSENT_RESOURCES[kind]
        rid = getattr(message, id_field)
        if rid:
            raise P4RuntimeError(Code.NOT_FOUND, f"no {what} with id {rid}: the program has none")
        if write:
            raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                 f"{kind}: {id_field} is required in a write (and the program has no {what})")

    def _direct_meter_table(self, dme: p4runtime_pb2.DirectMeterEntry, write: bool) -> None:
        """No table of the program has a direct meter: reads of all tables find nothing;
        naming a table, or writing, is an error."""
        table_id = dme.table_entry.table_id
        if table_id:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, f"{self._table(table_id).info.name} has no direct meter")
        if write:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, "direct meter write needs a table_id "
                                 "(and no table of the program has a direct meter)")

    def _read_table_entries(self, te: p4runtime_pb2.TableEntry) -> Iterator[p4runtime_pb2.Entity]:
        states = [self._table(te.table_id)] if te.table_id else list(self.tables.values())
        with_counters = te.HasField("counter_data")
        if te.is_default_action:
            for state in states:
                out = p4runtime_pb2.Entity()
                out.table_entry.table_id = state.info.id
                out.table_entry.is_default_action = True
                out.table_entry.action.action.CopyFrom(
                    action_message(state.default.action, state.default.params))
                yield out
            return
        for state, entry in self._matching_entries(states, te):
            out = p4runtime_pb2.Entity()
            out.table_entry.CopyFrom(entry.message())
            if with_counters and state.info.direct_counter_id:
                packets, bytes_ = self._counter_of(state, entry)
                out.table_entry.counter_data.packet_count = packets
                out.table_entry.counter_data.byte_count = bytes_
            yield out

    def _read_direct_counters(self, dce: p4runtime_pb2.DirectCounterEntry) -> Iterator[p4runtime_pb2.Entity]:
        if not dce.HasField("table_entry"):  # p4runtime.proto: "This field is required"
            raise P4RuntimeError(Code.INVALID_ARGUMENT, "DirectCounterEntry without table_entry "
                                 "(table_id 0 reads every table's direct counters)")
        te = dce.table_entry
        if te.table_id:
            states = [self._table(te.table_id)]
            if not states[0].info.direct_counter_id:
                raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                     f"{states[0].info.name} has no direct counter")
        else:
            states = [s for s in self.tables.values() if s.info.direct_counter_id]
        if te.is_default_action:
            for state in states:
                out = p4runtime_pb2.Entity()
                out.direct_counter_entry.table_entry.table_id = state.info.id
                out.direct_counter_entry.table_entry.is_default_action = True
                out.direct_counter_entry.data.SetInParent()  # a miss is never counted
                yield out
            return
        for state, entry in self._matching_entries(states, te):
            out = p4runtime_pb2.Entity()
            out_te = out.direct_counter_entry.table_entry
            out_te.table_id = state.info.id
            out_te.match.extend(entry.match())
            out_te.priority = entry.priority
            packets, bytes_ = self._counter_of(state, entry)
            out.direct_counter_entry.data.packet_count = packets
            out.direct_counter_entry.data.byte_count = bytes_
            yield out

    # --- helpers -----------------------------------------------------------------------------

    def _table(self, table_id: int) -> TableState:
        state = self.tables.get(table_id)
        if state is None:
            # Spec 9.1.1 makes an unknown field id INVALID_ARGUMENT; a table id likewise (as BMv2).
            raise P4RuntimeError(Code.INVALID_ARGUMENT, f"no table with id {table_id}")
        return state

    def _matching_entries(self, states: list[TableState],
                          te: p4runtime_pb2.TableEntry) -> list[tuple[TableState, StoredEntry]]:
        """The entries a read filter selects: the one its match names, or every entry of `states`.

        Shared by table-entry and direct-counter reads, which filter by the same rules.
        """
        if not len(te.match):
            return [(s, e) for s in states for e in s.entries.values()]
        if not te.table_id:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, "a match filter needs a table_id")
        found = states[0].entries.get(self._key(states[0].info, match_values(te)))
        return [(states[0], found)] if found is not None else []

    def _counter_of(self, state: TableState, entry: StoredEntry) -> tuple[int, int]:
        if state.binding and state.binding.read_counter:
            return state.binding.read_counter(entry.key)
        return entry.counter[0], entry.counter[1]

    def _counter_target(self, te: p4runtime_pb2.TableEntry) -> tuple[TableState, StoredEntry]:
        if te.table_id == 0:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, "direct counter write needs a table_id")
        state = self._table(te.table_id)
        if not state.info.direct_counter_id:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, f"{state.info.name} has no direct counter")
        if te.is_default_action:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, "a miss is not counted; nothing to write")
        key = self._key(state.info, match_values(te))
        entry = state.entries.get(key)
        if entry is None:
            raise P4RuntimeError(Code.NOT_FOUND, f"{state.info.name}: no such entry")
        return state, entry

    def _program_default(self, info: TableInfo) -> DefaultEntry:
        name = PROGRAM_DEFAULT_ACTIONS.get(info.name)
        if name is None:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, f"{info.name}: no known default action")
        action = self.schema.action_by_name(name)
        return DefaultEntry(action, {})

    @staticmethod
    def _key(info: TableInfo, match: list[Match]) -> Key:
        """Validate the match and return the entry's key."""
        fields = info.fields_by_id
        given: dict[int, Match] = {}
        for fm in match:
            mf = fields.get(fm[0])
            if mf is None:
                raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                     f"{info.name} has no match field with id {fm[0]}")
            if fm[0] in given:
                raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                     f"{info.name}: match field {mf.name} given twice")
            given[fm[0]] = fm
        key: list[tuple[int, int]] = []
        for mf in info.match_fields:
            got = given.get(mf.id)
            if mf.match_type == EXACT:
                if got is None:
                    raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                         f"{info.name} match field {mf.name} (exact) is missing")
                if got[1] != "exact":
                    raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                         f"{info.name} match field {mf.name} is an exact match")
                value = decode(got[2], mf.bitwidth, info.name, "match field", mf.name)
                key.append((value, mf.bitwidth))
            elif mf.match_type == LPM:
                if got is None:  # don't care: the spec omits it rather than sending /0
                    key.append((0, 0))
                    continue
                what = f"{info.name} match field {mf.name}"
                if got[1] != "lpm":
                    raise P4RuntimeError(Code.INVALID_ARGUMENT, f"{what} is an LPM match")
                plen = got[3]
                if not 1 <= plen <= mf.bitwidth:
                    raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                         f"{what}: prefix_len {plen} not in 1..{mf.bitwidth} "
                                         "(omit the field for a don't-care match)")
                value = decode(got[2], mf.bitwidth, what)
                host_mask = (1 << (mf.bitwidth - plen)) - 1
                if value & host_mask:
                    raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                         f"{what}: bits beyond the /{plen} prefix are set")
                key.append((value, plen))
            else:
                raise P4RuntimeError(Code.UNIMPLEMENTED,
                                     f"{info.name} match field {mf.name}: match type not supported")
        return tuple(key)

    def _action(self, info: TableInfo, te: EntryFields,
                default: bool) -> tuple[ActionInfo, dict[str, int]]:
        """Validate the entry's action for `info`; return (action, params by name)."""
        kind = te.action_kind
        if kind is None:
            raise P4RuntimeError(Code.INVALID_ARGUMENT, f"{info.name}: the entry has no action")
        if kind != "action":
            raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                 f"{info.name} has no action profile; use a direct action")
        action = self.schema.actions.get(te.action_id)
        if action is None:
            # Spec 9.1.2: an action id that is not one of the table's is INVALID_ARGUMENT.
            raise P4RuntimeError(Code.INVALID_ARGUMENT, f"no action with id {te.action_id}")
        scope = info.action_scopes.get(action.id)
        if scope is None:
            raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                 f"{action.name} is not an action of {info.name}")
        if default and scope == SCOPE_TABLE_ONLY:
            raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                 f"{action.name} is @tableonly in {info.name}")
        if not default and scope == SCOPE_DEFAULT_ONLY:
            raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                 f"{action.name} is @defaultonly in {info.name}")
        by_id = action.params_by_id
        values: dict[int, int] = {}
        for param_id, data in te.params:
            pinfo = by_id.get(param_id)
            if pinfo is None:
                raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                     f"{action.name} has no parameter with id {param_id}")
            if param_id in values:
                raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                     f"{action.name}: parameter {pinfo.name} given twice")
            values[param_id] = decode(data, pinfo.bitwidth, action.name, "parameter", pinfo.name)
        params: dict[str, int] = {}
        for pinfo in action.params:
            value = values.get(pinfo.id)
            if value is None:
                raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                     f"{action.name}: parameter {pinfo.name} is missing")
            params[pinfo.name] = value
        return action, params
