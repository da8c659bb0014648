"""The P4Runtime WriteRequest, decoded from its wire bytes without protobuf.

With the pure-Python protobuf of protobuf 3.20.3 (what Python 3.11 gets here), parsing one
WriteRequest costs ~70-100 us, more than the rest of the server's Write. `parse_write` decodes
only what the load balancer's tables use and returns None for anything else, which the server
then parses with protobuf; either way the server reads the request as one `WriteFields`.
"""

from __future__ import annotations

from p4.v1 import p4runtime_pb2

from p4cf_kit.switch.embedded.arbitration import election_id_of
from p4cf_kit.switch.embedded.entries import EntryFields, Match

# One update of a Write: (type, the entity; a table entry arrives decoded as EntryFields).
Update = tuple[int, EntryFields | p4runtime_pb2.Entity]


class WriteFields:
    """What the server reads of a WriteRequest, as plain values."""

    __slots__ = ("device_id", "role", "election_id", "atomicity", "updates")

    def __init__(self) -> None:
        self.device_id = 0
        self.role = ""
        self.election_id: int | None = None  # None: not set (distinct from 0)
        self.atomicity: int = p4runtime_pb2.WriteRequest.CONTINUE_ON_ERROR
        self.updates: list[Update] = []

    @classmethod
    def from_message(cls, request: p4runtime_pb2.WriteRequest) -> WriteFields:
        w = cls()
        w.device_id = request.device_id
        w.role = request.role
        if request.HasField("election_id"):
            w.election_id = election_id_of(request.election_id)
        w.atomicity = request.atomicity
        w.updates = [(u.type, u.entity) for u in request.updates]
        return w


class _Unparsed(Exception):
    """Something `parse_write` leaves to protobuf: not an error by itself."""


# Exclusive upper bounds of the scalar types; larger varints (negative numbers, values protobuf
# would truncate) are left to protobuf.
_U64, _I64, _U32, _I32 = 1 << 64, 1 << 63, 1 << 32, 1 << 31


def parse_write(data: bytes) -> WriteFields | None:
    """Decode a WriteRequest whose updates are all table entries, as protobuf would; None for
    anything else (other entities, fields the server refuses anyway, a repeated singular
    message, values protobuf would wrap or truncate, malformed data), left to protobuf.

    Only the fields of the load balancer's tables are understood (exact and LPM matches,
    direct actions, counter data), so what it accepts reads exactly as the message would.
    """
    try:
        return _write_request(data)
    except (_Unparsed, IndexError, ValueError):  # ValueError: a role that is not UTF-8
        return None


def _varint(data: bytes, pos: int, limit: int) -> tuple[int, int]:
    """The varint at `pos` (at most 10 bytes, below `limit`) and the position after it."""
    value = 0
    shift = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            if value >= limit:
                raise _Unparsed
            return value, pos
        shift += 7
        if shift > 63:
            raise _Unparsed


def _length(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A length-delimited field's (start, stop), checked against the enclosing `end`."""
    b = data[pos]
    if b < 0x80:
        n, pos = b, pos + 1
    else:
        n, pos = _varint(data, pos, _I32)
    stop = pos + n
    if stop > end:
        raise _Unparsed
    return pos, stop


def _write_request(data: bytes) -> WriteFields:
    req = WriteFields()
    pos, end = 0, len(data)
    while pos < end:
        tag = data[pos]
        pos += 1
        if tag == 0x22:  # updates = 4
            start, pos = _length(data, pos, end)
            req.updates.append(_update(data, start, pos))
        elif tag == 0x08:  # device_id = 1 (uint64)
            req.device_id, pos = _varint(data, pos, _U64)
        elif tag == 0x1A:  # election_id = 3 (Uint128 {high = 1, low = 2})
            if req.election_id is not None:
                raise _Unparsed  # a repeated message field merges: protobuf's job
            start, pos = _length(data, pos, end)
            high, low = _two_varints(data, start, pos, _U64)
            req.election_id = (high << 64) | low
        elif tag == 0x28:  # atomicity = 5 (enum)
            req.atomicity, pos = _varint(data, pos, _I32)
        elif tag == 0x32:  # role = 6 (string)
            start, pos = _length(data, pos, end)
            req.role = data[start:pos].decode()
        else:  # role_id (deprecated), unknown fields, other wire types
            raise _Unparsed
    return req


def _update(data: bytes, pos: int, end: int) -> Update:
    update_type = 0
    entry: EntryFields | None = None
    while pos < end:
        tag = data[pos]
        pos += 1
        if tag == 0x08:  # type = 1 (enum)
            update_type, pos = _varint(data, pos, _I32)
        elif tag == 0x12 and entry is None:  # entity = 2: only a table_entry (= 2) in it
            start, pos = _length(data, pos, end)
            if start >= pos or data[start] != 0x12:
                raise _Unparsed
            inner, stop = _length(data, start + 1, pos)
            if stop != pos:  # more than the table entry: another entity, or a merge
                raise _Unparsed
            entry = _table_entry(data, inner, stop)
        else:
            raise _Unparsed
    if pos != end or entry is None:
        raise _Unparsed
    return update_type, entry


def _table_entry(data: bytes, pos: int, end: int) -> EntryFields:
    f = EntryFields()
    while pos < end:
        tag = data[pos]
        pos += 1
        if tag == 0x12:  # match = 2
            start, pos = _length(data, pos, end)
            f.match.append(_field_match(data, start, pos))
        elif tag == 0x08:  # table_id = 1 (uint32)
            f.table_id, pos = _varint(data, pos, _U32)
        elif tag == 0x1A and not f.has_action:  # action = 3 (TableAction)
            start, pos = _length(data, pos, end)
            f.has_action = True
            _table_action(data, start, pos, f)
        elif tag == 0x20:  # priority = 4 (int32; negative ones are left to protobuf)
            f.priority, pos = _varint(data, pos, _I32)
        elif tag == 0x28:  # controller_metadata = 5 (uint64)
            f.controller_metadata, pos = _varint(data, pos, _U64)
        elif tag == 0x3A and f.counter is None:  # counter_data = 7 {byte_count = 1, packet_count = 2}
            start, pos = _length(data, pos, end)
            byte_count, packet_count = _two_varints(data, start, pos, _I64)
            f.counter = (packet_count, byte_count)
        elif tag == 0x40:  # is_default_action = 8 (bool)
            value, pos = _varint(data, pos, _U64)
            f.is_default_action = value != 0
        elif tag == 0x48:  # idle_timeout_ns = 9 (int64)
            f.idle_timeout_ns, pos = _varint(data, pos, _I64)
        elif tag == 0x5A:  # metadata = 11 (bytes)
            start, pos = _length(data, pos, end)
            f.metadata = data[start:pos]
        else:  # meters, time_since_last_hit, is_const, unknown fields: protobuf's job
            raise _Unparsed
    if pos != end:
        raise _Unparsed
    return f


def _field_match(data: bytes, pos: int, end: int) -> Match:
    field_id = 0
    kind: str | None = None
    value = b""
    prefix_len = 0
    while pos < end:
        tag = data[pos]
        pos += 1
        if tag == 0x08:  # field_id = 1 (uint32)
            field_id, pos = _varint(data, pos, _U32)
        elif tag == 0x12 and kind is None:  # exact = 2 {value = 1}
            start, pos = _length(data, pos, end)
            kind = "exact"
            value, _ = _bytes_and_varint(data, start, pos, 0x0A, None, 0)
        elif tag == 0x22 and kind is None:  # lpm = 4 {value = 1, prefix_len = 2 (int32)}
            start, pos = _length(data, pos, end)
            kind = "lpm"
            value, prefix_len = _bytes_and_varint(data, start, pos, 0x0A, 0x10, _I32)
        else:  # ternary, range, optional, other, or a oneof set twice
            raise _Unparsed
    if pos != end:
        raise _Unparsed
    return field_id, kind, value, prefix_len


def _table_action(data: bytes, pos: int, end: int, f: EntryFields) -> None:
    """TableAction: only a direct `action` (= 1) is decoded; action profiles are protobuf's."""
    while pos < end:
        tag = data[pos]
        pos += 1
        if tag == 0x0A and f.action_kind is None:
            start, pos = _length(data, pos, end)
            f.action_kind = "action"
            _action(data, start, pos, f)
        else:
            raise _Unparsed
    if pos != end:
        raise _Unparsed


def _action(data: bytes, pos: int, end: int, f: EntryFields) -> None:
    while pos < end:
        tag = data[pos]
        pos += 1
        if tag == 0x22:  # params = 4 {param_id = 2 (uint32), value = 3 (bytes)}
            start, pos = _length(data, pos, end)
            value, param_id = _bytes_and_varint(data, start, pos, 0x1A, 0x10, _U32)
            f.params.append((param_id, value))
        elif tag == 0x08:  # action_id = 1 (uint32)
            f.action_id, pos = _varint(data, pos, _U32)
        else:
            raise _Unparsed
    if pos != end:
        raise _Unparsed


def _two_varints(data: bytes, pos: int, end: int, limit: int) -> tuple[int, int]:
    """A message of two varints, fields 1 and 2 (Uint128, CounterData): their values."""
    first = second = 0
    while pos < end:
        tag = data[pos]
        pos += 1
        if tag == 0x08:
            first, pos = _varint(data, pos, limit)
        elif tag == 0x10:
            second, pos = _varint(data, pos, limit)
        else:
            raise _Unparsed
    if pos != end:
        raise _Unparsed
    return first, second


def _bytes_and_varint(data: bytes, pos: int, end: int, bytes_tag: int, int_tag: int | None,
                      limit: int) -> tuple[bytes, int]:
    """A message of one bytes field and at most one varint field (FieldMatch.Exact and .LPM,
    Action.Param), by their tags: their values (the varint's is 0 when `int_tag` is None)."""
    value = b""
    n = 0
    while pos < end:
        tag = data[pos]
        pos += 1
        if tag == bytes_tag:
            start, pos = _length(data, pos, end)
            value = data[start:pos]
        elif tag == int_tag:
            n, pos = _varint(data, pos, limit)
        else:
            raise _Unparsed
    if pos != end:
        raise _Unparsed
    return value, n
