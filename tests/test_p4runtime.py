"""The switch targets' P4Runtime service over real gRPC, written once, run on each target.

Clients are p4runtime-shell (what the kit's control plane uses) and raw gRPC stubs (for the
error cases and arbitration, which the shell hides). Every test taking `switch` (directly or
through `addr`, `stub`, `shell`, `primary`) runs on each target of `tests/targets.py`: the
embedded switch in-process on a free loopback port, with the real program logic
(`LoadBalancerPipeline`) when that module exists, and BMv2's simple_switch_grpc where it is
installed (skipped otherwise, with the reason). Checks of the embedded switch's own insides
(its pipeline object, its error texts) run on it only; the last tests run its CLI as a
subprocess and stop it with SIGTERM.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import p4runtime_sh.shell as sh
import pytest
from google.rpc import code_pb2, status_pb2
from p4.config.v1 import p4info_pb2
from p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
from p4runtime_sh.p4runtime import P4RuntimeWriteException

from p4cf_kit.errors import SwitchError
from p4cf_kit.paths import P4INFO_TXT, REPO_ROOT
from p4cf_kit.switch.embedded import p4values
from p4cf_kit.switch.embedded.cpu_affinity import control_plane_cpu
from p4cf_kit.switch.embedded.entries import EntryFields
from p4cf_kit.switch.embedded.p4info import P4Schema, load_p4info
from p4cf_kit.switch.embedded.server import P4RuntimeService, start_server
from p4cf_kit.switch.embedded.target import EmbeddedSwitch
from p4cf_kit.switch.embedded.write_wire import WriteFields, parse_write
from packet_io import packet_socket, receive_tcp_to
from targets import RunningSwitch, only_embedded

SCHEMA = P4Schema(load_p4info(P4INFO_TXT))
T_GROUP = SCHEMA.table_by_name("MyIngress.ecmp_group").id
T_NHOP = SCHEMA.table_by_name("MyIngress.ecmp_nhop").id
T_SEND = SCHEMA.table_by_name("MyEgress.send_frame").id
A_DROP = SCHEMA.action_by_name("MyIngress.drop").id
A_SELECT = SCHEMA.action_by_name("MyIngress.set_ecmp_select").id
A_NHOP = SCHEMA.action_by_name("MyIngress.set_nhop").id
A_REWRITE = SCHEMA.action_by_name("MyEgress.rewrite_mac").id
Code = grpc.StatusCode


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture
def switch(switch_target: RunningSwitch) -> RunningSwitch:
    """A switch with no pipeline set yet (as simple_switch_grpc starts with --no-p4), per target."""
    return switch_target


@pytest.fixture
def addr(switch: RunningSwitch) -> str:
    return switch.grpc_addr


@pytest.fixture
def device_config(switch: RunningSwitch) -> bytes:
    """The p4_device_config to push: BMv2's JSON; for the embedded switch, which ignores it, any bytes."""
    return switch.pipeline.device_config_bytes() if switch.pipeline.device_config else b"anything"


def spec_or_bmv2(switch: RunningSwitch, spec, bmv2):
    """What the P4Runtime specification requires (the embedded switch answers that), or BMv2's
    answer where BMv2 departs from it (each case is a row of README "What differs between the
    targets", citing the section of the specification, 1.5)."""
    return bmv2 if switch.target == "bmv2" else spec


def embedded_pipeline(switch: RunningSwitch):
    """The embedded switch's program object, to look inside it (None on other targets)."""
    return switch.embedded.pipeline if switch.embedded is not None else None


@pytest.fixture
def stub(addr: str) -> Iterator[p4runtime_pb2_grpc.P4RuntimeStub]:
    channel = grpc.insecure_channel(addr)
    yield p4runtime_pb2_grpc.P4RuntimeStub(channel)
    channel.close()


@pytest.fixture
def shell(switch: RunningSwitch, addr: str, tmp_path: Path) -> Iterator[None]:
    """p4runtime-shell as primary (election id (0,1)) that set the pipeline itself."""
    device_config = switch.pipeline.device_config
    if device_config is None:
        device_config = tmp_path / "device_config.bin"
        device_config.write_bytes(b"")
    sh.setup(device_id=1, grpc_addr=addr, election_id=(0, 1), verbose=False,
             config=sh.FwdPipeConfig(str(switch.pipeline.p4info), str(device_config)))
    yield
    sh.teardown()


class Stream:
    """A raw StreamChannel: send arbitration updates, read the server's replies."""

    def __init__(self, stub: p4runtime_pb2_grpc.P4RuntimeStub) -> None:
        self._out: queue.Queue = queue.Queue()
        self.replies: queue.Queue = queue.Queue()
        self.call = stub.StreamChannel(iter(self._out.get, None))
        self.error: grpc.RpcError | None = None
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        try:
            for reply in self.call:
                self.replies.put(reply)
        except grpc.RpcError as exc:
            self.error = exc
        self.replies.put(None)

    def arbitrate(self, low: int, high: int = 0, device_id: int = 1, role: str | None = None) -> None:
        req = p4runtime_pb2.StreamMessageRequest()
        req.arbitration.device_id = device_id
        req.arbitration.election_id.high = high
        req.arbitration.election_id.low = low
        if role is not None:
            req.arbitration.role.name = role
        self._out.put(req)

    def next(self, timeout: float = 2.0) -> p4runtime_pb2.StreamMessageResponse | None:
        return self.replies.get(timeout=timeout)

    def status(self, timeout: float = 2.0) -> int:
        reply = self.next(timeout)
        assert reply is not None, f"stream ended: {self.error}"
        return reply.arbitration.status.code

    def close(self) -> None:
        self._out.put(None)
        self.call.cancel()


def election(low: int, high: int = 0) -> p4runtime_pb2.Uint128:
    return p4runtime_pb2.Uint128(high=high, low=low)


def set_pipeline(stub, low: int = 1, action=p4runtime_pb2.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
                 p4info: p4info_pb2.P4Info | None = None, cookie: int = 0,
                 device_config: bytes = b"anything") -> None:
    req = p4runtime_pb2.SetForwardingPipelineConfigRequest(device_id=1, election_id=election(low),
                                                           action=action)
    if action != p4runtime_pb2.SetForwardingPipelineConfigRequest.COMMIT:
        req.config.p4info.CopyFrom(p4info if p4info is not None else SCHEMA.p4info)
        req.config.p4_device_config = device_config
        req.config.cookie.cookie = cookie
    stub.SetForwardingPipelineConfig(req)


@pytest.fixture
def primary(stub, device_config: bytes) -> Iterator[Stream]:
    """A raw primary (election id 1) that has committed the pipeline."""
    stream = Stream(stub)
    stream.arbitrate(1)
    assert stream.status() == code_pb2.OK
    set_pipeline(stub, device_config=device_config)
    yield stream
    stream.close()


def nhop_entry(select: bytes, port: int = 1, dmac: int = 0x0A0000000101, ipv4: int = 0x0A000101,
               counter: tuple[int, int] | None = None) -> p4runtime_pb2.TableEntry:
    te = p4runtime_pb2.TableEntry(table_id=T_NHOP)
    te.match.add(field_id=1).exact.value = select
    a = te.action.action
    a.action_id = A_NHOP
    a.params.add(param_id=1, value=p4values.encode(dmac))
    a.params.add(param_id=2, value=p4values.encode(ipv4))
    a.params.add(param_id=3, value=p4values.encode(port))
    if counter is not None:
        te.counter_data.packet_count, te.counter_data.byte_count = counter
    return te


def group_entry(prefix: int, plen: int, base: int = 1, count: int = 2) -> p4runtime_pb2.TableEntry:
    te = p4runtime_pb2.TableEntry(table_id=T_GROUP)
    lpm = te.match.add(field_id=1).lpm
    lpm.value, lpm.prefix_len = p4values.encode(prefix), plen
    te.action.action.action_id = A_SELECT
    te.action.action.params.add(param_id=1, value=p4values.encode(base))
    te.action.action.params.add(param_id=2, value=p4values.encode(count))
    return te


def write(stub, *updates: tuple[int, p4runtime_pb2.TableEntry | p4runtime_pb2.DirectCounterEntry],
          low: int = 1, atomicity: int = p4runtime_pb2.WriteRequest.CONTINUE_ON_ERROR) -> None:
    req = p4runtime_pb2.WriteRequest(device_id=1, election_id=election(low), atomicity=atomicity)
    for kind, entity in updates:
        u = req.updates.add(type=kind)
        if isinstance(entity, p4runtime_pb2.TableEntry):
            u.entity.table_entry.CopyFrom(entity)
        else:
            u.entity.direct_counter_entry.CopyFrom(entity)
    stub.Write(req)


def update_errors(exc: grpc.RpcError) -> list[tuple[int, str]]:
    """The per-update (canonical_code, message) list a failed Write carries."""
    assert exc.code() == Code.UNKNOWN
    details = dict(exc.trailing_metadata())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    out = []
    for any_ in status.details:
        err = p4runtime_pb2.Error()
        assert any_.Unpack(err)
        out.append((err.canonical_code, err.message))
    return out


def write_error(stub, *updates, **kw) -> list[tuple[int, str]]:
    with pytest.raises(grpc.RpcError) as info:
        write(stub, *updates, **kw)
    return update_errors(info.value)


def read(stub, entity: p4runtime_pb2.Entity) -> list[p4runtime_pb2.Entity]:
    req = p4runtime_pb2.ReadRequest(device_id=1)
    req.entities.add().CopyFrom(entity)
    return [e for reply in stub.Read(req) for e in reply.entities]


def read_table(stub, table_id: int = 0, **fields) -> list[p4runtime_pb2.TableEntry]:
    ent = p4runtime_pb2.Entity()
    ent.table_entry.table_id = table_id
    for k, v in fields.items():
        setattr(ent.table_entry, k, v)
    return [e.table_entry for e in read(stub, ent)]


INSERT, MODIFY, DELETE = (p4runtime_pb2.Update.INSERT, p4runtime_pb2.Update.MODIFY,
                          p4runtime_pb2.Update.DELETE)


# --- p4values --------------------------------------------------------------------------------

def test_bytestrings_are_canonical_and_checked() -> None:
    assert p4values.encode(0) == b"\x00"
    assert p4values.encode(0x0102) == b"\x01\x02"
    assert p4values.decode(b"\x00\x00\x01\xff", 9, "port") == 0x1FF  # padded: accepted
    assert p4values.canonical(b"\x00\x00\x05", 16, "x") == b"\x05"
    with pytest.raises(p4values.P4RuntimeError) as info:
        p4values.decode(b"\x02\x00", 9, "port")
    assert info.value.code == Code.INVALID_ARGUMENT  # spec 9.1.1, 9.1.2
    with pytest.raises(p4values.P4RuntimeError) as info:
        p4values.decode(b"", 9, "port")
    assert info.value.code == Code.INVALID_ARGUMENT
    with pytest.raises(p4values.P4RuntimeError, match="^t match field f: value 0x200 does not"):
        p4values.decode(b"\x02\x00", 9, "t", "match field", "f")  # named in parts


# --- the server's own WriteRequest decoder ---------------------------------------------------

def plain_write(w: WriteFields) -> tuple:
    """A WriteFields as comparable values; table entries as their EntryFields values, from
    whichever side decoded them (protobuf leaves them as Entity messages)."""
    updates = []
    for kind, entity in w.updates:
        if not isinstance(entity, EntryFields):
            assert entity.WhichOneof("entity") == "table_entry"
            entity = EntryFields.from_message(entity.table_entry)
        updates.append((kind, tuple(getattr(entity, a) for a in EntryFields.__slots__)))
    return w.device_id, w.role, w.election_id, w.atomicity, updates


def decoded_alike(data: bytes) -> bool:
    """Whether `parse_write` took `data`; if it did, it must read it exactly as protobuf does."""
    fast = parse_write(data)
    if fast is None:
        return False
    message = p4runtime_pb2.WriteRequest.FromString(data)  # must not raise
    assert plain_write(fast) == plain_write(WriteFields.from_message(message)), data.hex()
    return True


def write_request(*updates: tuple[int, p4runtime_pb2.TableEntry], **fields) -> p4runtime_pb2.WriteRequest:
    req = p4runtime_pb2.WriteRequest(device_id=1, election_id=election(1), **fields)
    for kind, te in updates:
        req.updates.add(type=kind).entity.table_entry.CopyFrom(te)
    return req


def decoder_requests() -> list[p4runtime_pb2.WriteRequest]:
    """Requests the decoder must take, covering every field it reads."""
    reqs = [write_request((MODIFY, nhop_entry(b"\x01", port=2))),
            write_request((INSERT, nhop_entry(b"\x00\x00\x05", counter=(7, 700))),
                          (DELETE, group_entry(0x0A000000, 8)), (INSERT, group_entry(0x0A000064, 32)),
                          role="r\u00e9le", atomicity=p4runtime_pb2.WriteRequest.ROLLBACK_ON_ERROR),
            p4runtime_pb2.WriteRequest(device_id=(1 << 64) - 1, election_id=election((1 << 64) - 1, 5),
                                       atomicity=p4runtime_pb2.WriteRequest.DATAPLANE_ATOMIC),
            p4runtime_pb2.WriteRequest(device_id=1),  # no election id: not the same as 0
            p4runtime_pb2.WriteRequest(device_id=1, election_id=election(0))]
    odd = nhop_entry(b"", port=0)
    odd.priority, odd.controller_metadata, odd.metadata = 5, 1 << 63, b"\x00meta"
    odd.idle_timeout_ns = 10**12
    odd.match.add(field_id=9)  # no match kind at all
    odd.action.action.params.add(param_id=1, value=b"")
    reqs.append(write_request((MODIFY, odd), (7, p4runtime_pb2.TableEntry())))  # empty entry
    default = p4runtime_pb2.TableEntry(table_id=T_NHOP, is_default_action=True)
    default.action.action.action_id = A_DROP
    reset = p4runtime_pb2.TableEntry(table_id=T_SEND, is_default_action=True)
    profile_less = p4runtime_pb2.TableEntry(table_id=T_SEND)
    profile_less.action.SetInParent()  # an action field with nothing set in it
    reqs.append(write_request((MODIFY, default), (MODIFY, reset), (INSERT, profile_less)))
    return reqs


def test_write_decoder_reads_what_protobuf_reads() -> None:
    for req in decoder_requests():
        assert decoded_alike(req.SerializeToString()), req
    # Proto3 scalars may repeat on the wire (the last one counts) and come in any order.
    data = write_request((MODIFY, nhop_entry(b"\x01"))).SerializeToString()
    assert decoded_alike(data + b"\x08\x07\x28\x01")  # device_id 7, atomicity 1
    assert decoded_alike(b"\x28\x01" + data)


def test_write_decoder_leaves_the_rest_to_protobuf() -> None:
    """None for what it does not read exactly like protobuf: other entities, fields the server
    refuses anyway, merges of repeated messages, values protobuf would wrap or truncate."""
    base = write_request((MODIFY, nhop_entry(b"\x01")))
    counter = p4runtime_pb2.WriteRequest(device_id=1, election_id=election(1))
    counter.updates.add(type=MODIFY).entity.direct_counter_entry.table_entry.table_id = T_NHOP
    meter = write_request((MODIFY, nhop_entry(b"\x01")))
    meter.updates[0].entity.table_entry.meter_config.cir = 1
    ternary = write_request((MODIFY, p4runtime_pb2.TableEntry(table_id=T_NHOP)))
    ternary.updates[0].entity.table_entry.match.add(field_id=1).ternary.value = b"\x01"
    member = write_request((MODIFY, p4runtime_pb2.TableEntry(table_id=T_NHOP)))
    member.updates[0].entity.table_entry.action.action_profile_member_id = 1
    negative = write_request((MODIFY, p4runtime_pb2.TableEntry(table_id=T_NHOP, priority=-1)))
    const = write_request((MODIFY, p4runtime_pb2.TableEntry(table_id=T_NHOP, is_const=True)))
    no_entity = p4runtime_pb2.WriteRequest(device_id=1)
    no_entity.updates.add(type=INSERT)
    role_id = p4runtime_pb2.WriteRequest(device_id=1, role_id=2)
    for req in (counter, meter, ternary, member, negative, const, no_entity, role_id):
        assert parse_write(req.SerializeToString()) is None, req
    data = base.SerializeToString()
    for raw in (data + b"\x1a\x02\x10\x05",  # election_id twice: protobuf merges them
                data + b"\x78\x01",  # an unknown field
                data + b"\x32\x01\xff",  # a role that is not UTF-8
                data[:-1],  # cut short
                b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"):  # an 11-byte varint
        assert parse_write(raw) is None, raw.hex()


def test_write_decoder_fuzz_agrees_with_protobuf() -> None:
    """Mutated requests: whatever the decoder accepts, protobuf parses to the same values."""
    rng = random.Random(4)
    seeds = [r.SerializeToString() for r in decoder_requests()]
    taken = 0
    for _ in range(4000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 4)):
            what = rng.randrange(4)
            at = rng.randrange(len(data) + 1)
            if what == 0 and data:
                data[min(at, len(data) - 1)] = rng.randrange(256)
            elif what == 1:
                del data[at:at + rng.randrange(1, 4)]
            elif what == 2:
                data[at:at] = rng.randbytes(rng.randrange(1, 4))
            else:
                data += rng.choice(seeds)  # two requests in one: repeats, merges
        taken += decoded_alike(bytes(data))
    assert taken > 200  # the accepting side was exercised too


# --- Capabilities ------------------------------------------------------------------------------

def test_capabilities_reports_the_proto_version(stub, switch) -> None:
    reply = stub.Capabilities(p4runtime_pb2.CapabilitiesRequest())
    assert reply.p4runtime_api_version
    if switch.target == "embedded":
        assert reply.p4runtime_api_version == "1.4.1"


# --- p4runtime-shell end to end ----------------------------------------------------------------

def shell_nhop(select: str, dmac: str, ipv4: str, port: str) -> sh.TableEntry:
    """An ecmp_nhop entry (set_nhop) built through the shell, ready to insert or modify."""
    nh = sh.TableEntry("MyIngress.ecmp_nhop")(action="MyIngress.set_nhop")
    nh.match["meta.ecmp_select"] = select
    nh.action["nhop_dmac"] = dmac
    nh.action["nhop_ipv4"] = ipv4
    nh.action["port"] = port
    return nh


def test_shell_inserts_modifies_reads_and_deletes(shell) -> None:
    te = sh.TableEntry("MyIngress.ecmp_group")(action="MyIngress.set_ecmp_select")
    te.match["hdr.ipv4.dstAddr"] = "10.0.0.100/32"
    te.action["ecmp_base"] = "2"
    te.action["ecmp_count"] = "3"
    te.insert()
    for i, port in ((2, 2), (3, 3), (4, 4)):
        nh = shell_nhop(str(i), f"00:00:00:00:00:0{i}", f"10.0.0.{i}", str(port))
        nh.insert()
    entries = list(sh.TableEntry("MyIngress.ecmp_nhop").read())
    assert sorted(int.from_bytes(e.match["meta.ecmp_select"].exact.value, "big") for e in entries) == [2, 3, 4]
    # migration: one MODIFY moves backend 3 to port 5
    nh = shell_nhop("3", "00:00:00:00:00:05", "10.0.0.5", "5")
    nh.modify()
    one = sh.TableEntry("MyIngress.ecmp_nhop")
    one.match["meta.ecmp_select"] = "3"
    (got,) = list(one.read())
    assert got.action["port"].value == b"\x05"  # canonical, as the shell would send it
    assert got.action["nhop_ipv4"].value == bytes([10, 0, 0, 5])
    nh.delete()
    assert len(list(sh.TableEntry("MyIngress.ecmp_nhop").read())) == 2
    group = list(sh.TableEntry("MyIngress.ecmp_group").read())
    assert group[0].match["hdr.ipv4.dstAddr"].lpm.prefix_len == 32


def test_shell_sees_write_errors_per_update(shell) -> None:
    nh = sh.TableEntry("MyIngress.ecmp_nhop")(action="MyIngress.drop")
    nh.match["meta.ecmp_select"] = "7"
    nh.insert()
    with pytest.raises(P4RuntimeWriteException) as info:
        nh.insert()
    assert info.value.errors[0][1].canonical_code == code_pb2.ALREADY_EXISTS
    gone = sh.TableEntry("MyIngress.ecmp_nhop")(action="MyIngress.drop")
    gone.match["meta.ecmp_select"] = "8"
    with pytest.raises(P4RuntimeWriteException) as info:
        gone.modify()
    assert info.value.errors[0][1].canonical_code == code_pb2.NOT_FOUND


def test_shell_default_entry_modify_and_read(shell) -> None:
    default = sh.TableEntry("MyEgress.send_frame")(is_default=True)
    (got,) = list(default.read())
    assert got.action.action_name == "MyEgress.drop"
    default = sh.TableEntry("MyEgress.send_frame")(is_default=True, action="MyEgress.rewrite_mac")
    default.action["smac"] = "00:00:00:00:00:aa"
    default.modify()
    (got,) = list(sh.TableEntry("MyEgress.send_frame")(is_default=True).read())
    assert got.action.action_name == "MyEgress.rewrite_mac"
    assert got.action["smac"].value == b"\xaa"


def test_shell_direct_counters(shell) -> None:
    nh = shell_nhop("2", "00:00:00:00:00:02", "10.0.0.2", "2")
    nh.insert()
    dc = sh.DirectCounterEntry("MyIngress.nhop_counter")
    dc.table_entry.match["meta.ecmp_select"] = "2"
    dc.packet_count = 7
    dc.byte_count = 700
    dc.modify()
    (got,) = list(sh.DirectCounterEntry("MyIngress.nhop_counter").read())
    assert (got.packet_count, got.byte_count) == (7, 700)
    nh.modify()  # a MODIFY without counter_data keeps the counters
    te = sh.TableEntry("MyIngress.ecmp_nhop")
    te.counter_data.packet_count = 0  # ask for counter data in the read
    (got,) = list(te.read())
    assert (got.counter_data.packet_count, got.counter_data.byte_count) == (7, 700)


# --- arbitration -------------------------------------------------------------------------------

def test_arbitration_primary_backup_and_takeover(stub, device_config, switch) -> None:
    a, b, c = Stream(stub), Stream(stub), Stream(stub)
    try:
        a.arbitrate(5)
        assert a.status() == code_pb2.OK
        b.arbitrate(3)
        reply = b.next()
        assert reply.arbitration.status.code == code_pb2.ALREADY_EXISTS
        assert reply.arbitration.election_id.low == 5  # the primary's id is reported
        c.arbitrate(9)  # higher id: becomes primary, everybody is told
        assert c.status() == code_pb2.OK
        assert a.status() == code_pb2.ALREADY_EXISTS
        assert b.status() == code_pb2.ALREADY_EXISTS
        with pytest.raises(grpc.RpcError) as info:  # the old primary may not write any more
            set_pipeline(stub, low=5, device_config=device_config)
        assert info.value.code() == Code.PERMISSION_DENIED
        set_pipeline(stub, low=9, device_config=device_config)
        c.close()  # primary leaves: no primary until someone arbitrates with id >= 9 (spec 5.3, 5.4)
        if switch.target == "bmv2":  # PI promotes the backup with the highest id instead
            assert a.status() == code_pb2.OK
            assert b.status() == code_pb2.ALREADY_EXISTS
            write(stub, (INSERT, nhop_entry(b"\x01")), low=5)
            return
        assert a.status() == code_pb2.NOT_FOUND
        assert b.status() == code_pb2.NOT_FOUND
        with pytest.raises(grpc.RpcError) as info:
            write(stub, (INSERT, nhop_entry(b"\x01")), low=5)
        assert info.value.code() == Code.PERMISSION_DENIED
        a.arbitrate(9)
        assert a.status() == code_pb2.OK
        assert b.status() == code_pb2.ALREADY_EXISTS
        write(stub, (INSERT, nhop_entry(b"\x01")), low=9)
    finally:
        for s in (a, b, c):
            s.close()


def test_duplicate_election_id_and_wrong_device_end_the_stream(stub, switch) -> None:
    a, b, c = Stream(stub), Stream(stub), Stream(stub)
    try:
        a.arbitrate(4)
        assert a.status() == code_pb2.OK
        b.arbitrate(4)
        assert b.next() is None and b.error.code() == Code.INVALID_ARGUMENT
        c.arbitrate(1, device_id=99)  # a device the server does not know: NOT_FOUND (spec 5.3)
        if switch.target == "bmv2":  # PI takes any device id and makes the client its primary
            assert c.status() == code_pb2.OK
        else:
            assert c.next() is None and c.error.code() == Code.NOT_FOUND
    finally:
        for s in (a, b, c):
            s.close()


def test_roles_arbitrate_independently(stub, switch) -> None:
    default, named = Stream(stub), Stream(stub)
    try:
        default.arbitrate(1)
        assert default.status() == code_pb2.OK
        named.arbitrate(1, role="monitor")  # the same id is fine in another role (spec 5.3)
        if switch.target == "bmv2":  # PI keeps election ids unique per device, over all roles
            assert named.next() is None and named.error.code() == Code.INVALID_ARGUMENT
        else:
            reply = named.next()
            assert reply.arbitration.status.code == code_pb2.OK
            assert reply.arbitration.role.name == "monitor"
            assert default.replies.empty()  # the default role's primary is not disturbed
        req = p4runtime_pb2.WriteRequest(device_id=1, election_id=election(1), role="other")
        with pytest.raises(grpc.RpcError) as info:  # a role nobody arbitrated for
            stub.Write(req)
        # Spec 12 checks the primary before the pipeline; PI checks the pipeline first.
        assert info.value.code() == spec_or_bmv2(switch, Code.PERMISSION_DENIED, Code.FAILED_PRECONDITION)
    finally:
        default.close()
        named.close()


def test_write_permissions(stub, primary) -> None:
    backup = Stream(stub)
    try:
        backup.arbitrate(0, high=0)  # election id 0 < 1: a backup
        assert backup.status() == code_pb2.ALREADY_EXISTS
        for low in (0, 2):  # the backup's id, an id nobody holds
            with pytest.raises(grpc.RpcError) as info:
                write(stub, (INSERT, nhop_entry(b"\x01")), low=low)
            assert info.value.code() == Code.PERMISSION_DENIED
        req = p4runtime_pb2.WriteRequest(device_id=1)  # no election id at all
        req.updates.add(type=INSERT).entity.table_entry.CopyFrom(nhop_entry(b"\x01"))
        with pytest.raises(grpc.RpcError) as info:
            stub.Write(req)
        assert info.value.code() == Code.PERMISSION_DENIED
        assert read_table(stub) == []  # backups may read
    finally:
        backup.close()


def test_dying_primary_stream_keeps_forwarding(stub, primary, switch) -> None:
    write(stub, (INSERT, group_entry(0x0A000064, 32, base=1, count=1)), (INSERT, nhop_entry(b"\x01")))
    primary.close()
    time.sleep(0.2)
    assert len(read_table(stub, T_NHOP)) == 1
    assert len(read_table(stub, T_GROUP)) == 1
    if embedded_pipeline(switch) is not None:
        assert embedded_pipeline(switch).nhop_counter(1) == (0, 0)  # the entry is still in the data plane


# --- forwarding pipeline config ----------------------------------------------------------------

def test_no_pipeline_is_failed_precondition(stub, device_config, switch) -> None:
    s = Stream(stub)
    try:
        s.arbitrate(1)
        assert s.status() == code_pb2.OK
        with pytest.raises(grpc.RpcError) as info:
            write(stub, (INSERT, nhop_entry(b"\x01")))
        assert info.value.code() == Code.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as info:
            read_table(stub)
        assert info.value.code() == Code.FAILED_PRECONDITION
        get = p4runtime_pb2.GetForwardingPipelineConfigRequest(device_id=1)
        if switch.target == "bmv2":  # PI refuses the Get
            with pytest.raises(grpc.RpcError) as info:
                stub.GetForwardingPipelineConfig(get)
            assert info.value.code() == Code.FAILED_PRECONDITION
        else:  # spec 15: no config known, so the reply's `config` is unset
            assert not stub.GetForwardingPipelineConfig(get).HasField("config")
        # VERIFY checks but does not commit
        set_pipeline(stub, action=p4runtime_pb2.SetForwardingPipelineConfigRequest.VERIFY,
                     device_config=device_config)
        with pytest.raises(grpc.RpcError) as info:
            read_table(stub)
        # spec 13: FAILED_PRECONDITION; PI, after a VERIFY, answers UNAVAILABLE
        assert info.value.code() == spec_or_bmv2(switch, Code.FAILED_PRECONDITION, Code.UNAVAILABLE)
    finally:
        s.close()


def test_set_pipeline_needs_the_primary(stub, device_config) -> None:
    with pytest.raises(grpc.RpcError) as info:
        set_pipeline(stub, device_config=device_config)
    assert info.value.code() == Code.PERMISSION_DENIED


@only_embedded  # the embedded switch runs only its own program; BMv2 takes it from the JSON
def test_other_p4info_is_refused_with_the_reason(stub, primary) -> None:
    other = p4info_pb2.P4Info()
    other.CopyFrom(SCHEMA.p4info)
    other.tables[1].match_fields[0].bitwidth = 16
    with pytest.raises(grpc.RpcError) as info:
        set_pipeline(stub, p4info=other)
    assert info.value.code() == Code.INVALID_ARGUMENT
    assert "MyIngress.ecmp_nhop" in info.value.details()
    renumbered = p4info_pb2.P4Info()
    renumbered.CopyFrom(SCHEMA.p4info)
    renumbered.actions[0].preamble.id += 1
    with pytest.raises(grpc.RpcError) as info:
        set_pipeline(stub, p4info=renumbered)
    assert info.value.code() == Code.INVALID_ARGUMENT
    req = p4runtime_pb2.SetForwardingPipelineConfigRequest(
        device_id=1, election_id=election(1),
        action=p4runtime_pb2.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT)
    with pytest.raises(grpc.RpcError) as info:  # no p4info at all
        stub.SetForwardingPipelineConfig(req)
    assert info.value.code() == Code.INVALID_ARGUMENT


def test_commit_reconcile_and_response_types(stub, primary, device_config, switch) -> None:
    Set = p4runtime_pb2.SetForwardingPipelineConfigRequest
    Get = p4runtime_pb2.GetForwardingPipelineConfigRequest
    dc = device_config
    write(stub, (INSERT, nhop_entry(b"\x01")))
    set_pipeline(stub, action=Set.RECONCILE_AND_COMMIT, cookie=7, device_config=dc)  # same program: entries stay
    assert len(read_table(stub, T_NHOP)) == 1
    with pytest.raises(grpc.RpcError) as info:  # nothing saved to commit: NOT_FOUND (spec 14)
        set_pipeline(stub, action=Set.COMMIT)
    assert info.value.code() == spec_or_bmv2(switch, Code.NOT_FOUND, Code.UNKNOWN)
    set_pipeline(stub, action=Set.VERIFY_AND_SAVE, cookie=8, device_config=dc)
    # spec 14: saved, not realized (entries stay until COMMIT); PI reads the saved, empty state
    assert len(read_table(stub, T_NHOP)) == spec_or_bmv2(switch, 1, 0)
    set_pipeline(stub, action=Set.COMMIT)  # a new pipeline: entries gone
    assert read_table(stub, T_NHOP) == []
    replies = {t: stub.GetForwardingPipelineConfig(Get(device_id=1, response_type=t)).config
               for t in (Get.ALL, Get.COOKIE_ONLY, Get.P4INFO_AND_COOKIE, Get.DEVICE_CONFIG_AND_COOKIE)}
    assert all(c.cookie.cookie == 8 for c in replies.values())
    assert replies[Get.ALL].p4info == SCHEMA.p4info and replies[Get.ALL].p4_device_config == dc
    assert not replies[Get.COOKIE_ONLY].HasField("p4info") and not replies[Get.COOKIE_ONLY].p4_device_config
    assert replies[Get.P4INFO_AND_COOKIE].HasField("p4info")
    assert not replies[Get.P4INFO_AND_COOKIE].p4_device_config
    assert replies[Get.DEVICE_CONFIG_AND_COOKIE].p4_device_config == dc
    assert not replies[Get.DEVICE_CONFIG_AND_COOKIE].HasField("p4info")
    write(stub, (INSERT, nhop_entry(b"\x01")))
    set_pipeline(stub, device_config=dc)  # VERIFY_AND_COMMIT also starts from empty tables
    assert read_table(stub, T_NHOP) == []


def test_unknown_device_is_not_found(stub, switch) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.GetForwardingPipelineConfig(p4runtime_pb2.GetForwardingPipelineConfigRequest(device_id=2))
    # spec 15: NOT_FOUND; PI answers as for a known device without a pipeline
    assert info.value.code() == spec_or_bmv2(switch, Code.NOT_FOUND, Code.FAILED_PRECONDITION)


# --- Write: validation and errors --------------------------------------------------------------

@only_embedded
def test_undecodable_write_is_internal_as_grpc_says(addr, primary) -> None:
    """The embedded server takes Write requests as bytes (its own decoder, then protobuf); what
    neither can read gets the answer gRPC gives when a request deserializer fails."""
    with grpc.insecure_channel(addr) as channel:
        raw_write = channel.unary_unary("/p4.v1.P4Runtime/Write")
        with pytest.raises(grpc.RpcError) as info:
            raw_write(b"\x22\x05\x12")  # an update longer than the request
        assert info.value.code() == Code.INTERNAL
        assert raw_write(write_request((INSERT, nhop_entry(b"\x01"))).SerializeToString()) == b""


def test_unknown_ids_are_invalid(stub, primary) -> None:
    """Spec 9.1.2: an action id that is not one of the table's is INVALID_ARGUMENT; the spec names
    no code for an unknown table id, both targets answer as 9.1.1 does for an unknown field id."""
    unknown_table = nhop_entry(b"\x01")
    unknown_table.table_id = 0x02000001
    unknown_action = nhop_entry(b"\x02")
    unknown_action.action.action.action_id = 0x01000001
    errors = write_error(stub, (INSERT, unknown_table), (INSERT, unknown_action))
    assert [code for code, _ in errors] == [code_pb2.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT]


def test_invalid_entries_are_refused(stub, primary, switch) -> None:
    wrong_action = nhop_entry(b"\x01")
    wrong_action.action.action.action_id = A_REWRITE  # an egress action on an ingress table
    unknown_field = nhop_entry(b"\x02")
    unknown_field.match[0].field_id = 9
    missing_param = nhop_entry(b"\x03")
    del missing_param.action.action.params[2]
    unknown_param = nhop_entry(b"\x04")
    unknown_param.action.action.params[2].param_id = 7
    lpm_host_bits = group_entry(0x0A000001, 24)
    lpm_zero_len = group_entry(0, 0)
    exact_as_lpm = nhop_entry(b"\x05")
    exact_as_lpm.match[0].lpm.value = b"\x05"
    with_priority = nhop_entry(b"\x06")
    with_priority.priority = 10
    no_action = p4runtime_pb2.TableEntry(table_id=T_NHOP)
    no_action.match.add(field_id=1).exact.value = b"\x08"
    empty_value = nhop_entry(b"")
    errors = write_error(stub, *((INSERT, e) for e in (
        wrong_action, unknown_field, missing_param, unknown_param, lpm_host_bits, lpm_zero_len,
        exact_as_lpm, with_priority, no_action, empty_value)))
    # spec 8.3: an empty bytestring is always refused; PI takes it (as 0) and inserts the entry
    empty = spec_or_bmv2(switch, code_pb2.INVALID_ARGUMENT, code_pb2.OK)
    assert [code for code, _ in errors] == [code_pb2.INVALID_ARGUMENT] * 9 + [empty]
    if switch.target == "embedded":  # the embedded switch's own wording
        assert "bits beyond the /24 prefix" in errors[4][1]
    assert len(read_table(stub)) == spec_or_bmv2(switch, 0, 1)


def test_values_out_of_range_and_padding(stub, primary) -> None:
    too_wide_key = nhop_entry(b"\x40\x00")  # 14-bit ecmp_select: 0x4000 does not fit
    too_wide_port = nhop_entry(b"\x01", port=512)  # 9-bit port
    padded = nhop_entry(b"\x00\x00\x03", port=3)
    padded.action.action.params[2].value = b"\x00\x00\x00\x03"
    errors = write_error(stub, (INSERT, too_wide_key), (INSERT, too_wide_port), (INSERT, padded))
    # spec 9.1.1 (match values) and 9.1.2 (action parameters): INVALID_ARGUMENT
    assert [code for code, _ in errors] == [code_pb2.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT, code_pb2.OK]
    (got,) = read_table(stub, T_NHOP)
    assert got.match[0].exact.value == b"\x03"  # returned canonical
    assert got.action.action.params[2].value == b"\x03"
    # the padded form names the same entry
    write(stub, (MODIFY, nhop_entry(b"\x00\x03", port=4)))
    (got,) = read_table(stub, T_NHOP)
    assert got.action.action.params[2].value == b"\x04"


def test_duplicates_and_missing_entries(stub, primary) -> None:
    write(stub, (INSERT, group_entry(0x0A000000, 24)))
    assert write_error(stub, (INSERT, group_entry(0x0A000000, 24)))[0][0] == code_pb2.ALREADY_EXISTS
    assert write_error(stub, (MODIFY, group_entry(0x0B000000, 24)))[0][0] == code_pb2.NOT_FOUND
    assert write_error(stub, (DELETE, group_entry(0x0B000000, 24)))[0][0] == code_pb2.NOT_FOUND
    write(stub, (INSERT, group_entry(0x0A000000, 16)))  # same value, other prefix: another entry
    write(stub, (DELETE, group_entry(0x0A000000, 24)))
    (left,) = read_table(stub, T_GROUP)
    assert left.match[0].lpm.prefix_len == 16


def test_batch_continue_on_error_applies_the_good_updates(stub, primary) -> None:
    errors = write_error(stub, (INSERT, nhop_entry(b"\x01")), (INSERT, nhop_entry(b"\x01")),
                         (INSERT, nhop_entry(b"\x02")))
    assert [code for code, _ in errors] == [code_pb2.OK, code_pb2.ALREADY_EXISTS, code_pb2.OK]
    assert len(read_table(stub, T_NHOP)) == 2


def test_batch_rollback_on_error_applies_nothing(stub, primary, switch) -> None:
    write(stub, (INSERT, nhop_entry(b"\x01", port=1)))
    if switch.target == "bmv2":  # ROLLBACK_ON_ERROR is optional; spec 12.2: UNIMPLEMENTED if not supported
        for atomicity in (p4runtime_pb2.WriteRequest.ROLLBACK_ON_ERROR, p4runtime_pb2.WriteRequest.DATAPLANE_ATOMIC):
            with pytest.raises(grpc.RpcError) as info:
                write(stub, (INSERT, nhop_entry(b"\x02")), atomicity=atomicity)
            assert info.value.code() == Code.UNIMPLEMENTED
        assert len(read_table(stub, T_NHOP)) == 1
        return
    errors = write_error(stub, (MODIFY, nhop_entry(b"\x01", port=9)), (INSERT, nhop_entry(b"\x02")),
                         (INSERT, nhop_entry(b"\x01")),
                         atomicity=p4runtime_pb2.WriteRequest.ROLLBACK_ON_ERROR)
    assert [code for code, _ in errors] == [code_pb2.ABORTED, code_pb2.ABORTED, code_pb2.ALREADY_EXISTS]
    (got,) = read_table(stub, T_NHOP)
    assert got.action.action.params[2].value == b"\x01"
    # a rolled-back DELETE brings the entry back with its counters
    dce = p4runtime_pb2.DirectCounterEntry()
    dce.table_entry.CopyFrom(nhop_entry(b"\x01"))
    dce.table_entry.ClearField("action")
    dce.data.packet_count, dce.data.byte_count = 4, 40
    write(stub, (MODIFY, dce))
    errors = write_error(stub, (DELETE, nhop_entry(b"\x01")), (DELETE, nhop_entry(b"\x05")),
                         atomicity=p4runtime_pb2.WriteRequest.ROLLBACK_ON_ERROR)
    assert [code for code, _ in errors] == [code_pb2.ABORTED, code_pb2.NOT_FOUND]
    ent = p4runtime_pb2.Entity()
    ent.direct_counter_entry.table_entry.table_id = T_NHOP
    (got,) = read(stub, ent)
    assert (got.direct_counter_entry.data.packet_count, got.direct_counter_entry.data.byte_count) == (4, 40)
    if embedded_pipeline(switch) is not None:
        assert embedded_pipeline(switch).nhop_counter(1) == (4, 40)
    with pytest.raises(grpc.RpcError) as info:
        write(stub, (INSERT, nhop_entry(b"\x03")), atomicity=p4runtime_pb2.WriteRequest.DATAPLANE_ATOMIC)
    assert info.value.code() == Code.UNIMPLEMENTED


def test_default_entries(stub, primary) -> None:
    (default,) = read_table(stub, T_NHOP, is_default_action=True)
    assert default.action.action.action_id == A_DROP
    assert len(read_table(stub, 0, is_default_action=True)) == 3
    new = p4runtime_pb2.TableEntry(table_id=T_GROUP, is_default_action=True)
    new.action.action.action_id = A_SELECT
    new.action.action.params.add(param_id=1, value=b"\x01")
    new.action.action.params.add(param_id=2, value=b"\x02")
    write(stub, (MODIFY, new))
    (got,) = read_table(stub, T_GROUP, is_default_action=True)
    assert got.action.action == new.action.action
    assert read_table(stub, T_GROUP) == []  # a default entry is not an entry
    assert write_error(stub, (INSERT, new))[0][0] == code_pb2.INVALID_ARGUMENT
    reset = p4runtime_pb2.TableEntry(table_id=T_GROUP, is_default_action=True)
    write(stub, (MODIFY, reset))  # MODIFY without an action: back to the program's default
    (got,) = read_table(stub, T_GROUP, is_default_action=True)
    assert got.action.action.action_id == A_DROP


# --- Read ----------------------------------------------------------------------------------------

def test_read_wildcards_and_single_entries(stub, primary) -> None:
    write(stub, (INSERT, group_entry(0x0A000064, 32)), (INSERT, nhop_entry(b"\x01")),
          (INSERT, nhop_entry(b"\x02")))
    send = p4runtime_pb2.TableEntry(table_id=T_SEND)
    send.match.add(field_id=1).exact.value = b"\x01"
    send.action.action.action_id = A_REWRITE
    send.action.action.params.add(param_id=1, value=b"\x01")
    write(stub, (INSERT, send))
    assert len(read_table(stub)) == 4  # every table
    assert len(read_table(stub, T_NHOP)) == 2  # one table
    one = p4runtime_pb2.Entity()
    one.table_entry.CopyFrom(nhop_entry(b"\x00\x02"))
    one.table_entry.ClearField("action")
    (got,) = read(stub, one)
    assert got.table_entry.match[0].exact.value == b"\x02"
    one.table_entry.match[0].exact.value = b"\x09"
    assert read(stub, one) == []
    bad = p4runtime_pb2.Entity()
    bad.table_entry.table_id = 0x02000001
    with pytest.raises(grpc.RpcError) as info:
        read(stub, bad)
    assert info.value.code() == Code.INVALID_ARGUMENT  # as in a Write (test_unknown_ids_are_invalid)


def test_direct_counters_over_raw_grpc(stub, primary, switch) -> None:
    write(stub, (INSERT, nhop_entry(b"\x01", counter=(3, 300))), (INSERT, nhop_entry(b"\x02")))
    dce = p4runtime_pb2.DirectCounterEntry()
    dce.table_entry.table_id = T_NHOP
    dce.table_entry.match.add(field_id=1).exact.value = b"\x02"
    dce.data.packet_count, dce.data.byte_count = 5, 500
    write(stub, (MODIFY, dce))
    assert write_error(stub, (INSERT, dce))[0][0] == code_pb2.INVALID_ARGUMENT
    ent = p4runtime_pb2.Entity()
    ent.direct_counter_entry.table_entry.table_id = T_NHOP
    got = {e.direct_counter_entry.table_entry.match[0].exact.value:
           (e.direct_counter_entry.data.packet_count, e.direct_counter_entry.data.byte_count)
           for e in read(stub, ent)}
    assert got == {b"\x01": (3, 300), b"\x02": (5, 500)}
    ent = p4runtime_pb2.Entity()
    ent.direct_counter_entry.table_entry.SetInParent()  # table_id 0: all direct counters of all tables
    if switch.target == "bmv2":  # p4runtime.proto allows it; PI: "not supported yet"
        with pytest.raises(grpc.RpcError) as info:
            read(stub, ent)
        assert info.value.code() == Code.UNIMPLEMENTED
    else:
        assert len(read(stub, ent)) == 2
    ent = p4runtime_pb2.Entity()
    ent.direct_counter_entry.SetInParent()  # table_entry is required (p4runtime.proto)
    with pytest.raises(grpc.RpcError) as info:
        read(stub, ent)
    assert info.value.code() == Code.INVALID_ARGUMENT
    ent = p4runtime_pb2.Entity()
    ent.table_entry.table_id = T_NHOP
    ent.table_entry.counter_data.SetInParent()
    assert sorted(e.table_entry.counter_data.packet_count for e in read(stub, ent)) == [3, 5]
    ent.table_entry.ClearField("counter_data")  # not asked for: not returned
    assert not any(e.table_entry.HasField("counter_data") for e in read(stub, ent))
    no_counter = p4runtime_pb2.Entity()
    no_counter.direct_counter_entry.table_entry.table_id = T_GROUP
    with pytest.raises(grpc.RpcError) as info:
        read(stub, no_counter)
    assert info.value.code() == Code.INVALID_ARGUMENT
    if embedded_pipeline(switch) is not None:
        assert embedded_pipeline(switch).nhop_counter(2) == (5, 500)


# --- with and without the data plane -----------------------------------------------------------

def _tcp_frame(src: int, dst: int, sport: int, dport: int) -> bytes:
    eth = bytes.fromhex("020000000001") + bytes.fromhex("020000000002") + b"\x08\x00"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0,
                     src.to_bytes(4, "big"), dst.to_bytes(4, "big"))
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, 0x02, 65535, 0, 0)
    return eth + ip + tcp


@only_embedded  # runs frames through the embedded pipeline object; packets over veths: test_dataplane.py
def test_entries_written_over_p4runtime_forward_packets(stub, primary, switch) -> None:
    pipeline = embedded_pipeline(switch)
    write(stub, (INSERT, group_entry(0x0A000064, 32, base=1, count=1)),
          (INSERT, nhop_entry(b"\x01", port=3, ipv4=0x0A000003)))
    for egress in (3, 4):  # without a send_frame entry egress drops (the program's default)
        send = p4runtime_pb2.TableEntry(table_id=T_SEND)
        send.match.add(field_id=1).exact.value = bytes([egress])
        send.action.action.action_id = A_REWRITE
        send.action.action.params.add(param_id=1, value=bytes.fromhex("0200000000ff"))
        write(stub, (INSERT, send))
    frame = _tcp_frame(0x0A000001, 0x0A000064, 40000, 80)
    port, out = pipeline.process(frame, 1)
    assert port == 3 and out[26 + 4:26 + 8] == bytes([10, 0, 0, 3])  # DNAT to the backend
    ent = p4runtime_pb2.Entity()
    ent.direct_counter_entry.table_entry.table_id = T_NHOP
    (counted,) = read(stub, ent)
    assert counted.direct_counter_entry.data.packet_count == 1
    assert counted.direct_counter_entry.data.byte_count == len(frame)
    write(stub, (MODIFY, nhop_entry(b"\x01", port=4, ipv4=0x0A000004)))  # the migration's MODIFY
    assert pipeline.process(frame, 1)[0] == 4
    (counted,) = read(stub, ent)
    assert counted.direct_counter_entry.data.packet_count == 2  # counters survive the MODIFY


def test_control_plane_only_server() -> None:
    service = P4RuntimeService(device_id=1, pipeline=None)
    server, port = start_server(service, "127.0.0.1:0")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = p4runtime_pb2_grpc.P4RuntimeStub(channel)
    s = Stream(stub)
    try:
        s.arbitrate(1)
        assert s.status() == code_pb2.OK
        set_pipeline(stub)
        write(stub, (INSERT, nhop_entry(b"\x01", counter=(2, 20))))
        ent = p4runtime_pb2.Entity()
        ent.direct_counter_entry.table_entry.table_id = T_NHOP
        (got,) = read(stub, ent)
        assert got.direct_counter_entry.data.packet_count == 2
    finally:
        s.close()
        channel.close()
        server.stop(0).wait()


# --- the process -------------------------------------------------------------------------------

def test_non_loopback_address_needs_allow_remote() -> None:
    with pytest.raises(SwitchError):
        EmbeddedSwitch(grpc_addr="0.0.0.0:9559")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_control_cpu_choice() -> None:
    assert control_plane_cpu("auto", {0, 1, 2}) == 2
    assert control_plane_cpu("auto", {3}) is None  # one CPU: nothing to gain
    assert control_plane_cpu("none", {0, 1}) is None
    assert control_plane_cpu("0", {0, 1}) == 0
    for bad in ("5", "-1", "one"):
        with pytest.raises(SwitchError, match="--control-cpu"):
            control_plane_cpu(bad, {0, 1})


def thread_cpus(pid: int) -> set[frozenset[int]]:
    """The distinct CPU sets the threads of `pid` may run on."""
    out = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        (spec,) = [line.split()[1] for line in status.splitlines()
                   if line.startswith("Cpus_allowed_list")]
        cpus: set[int] = set()
        for part in spec.split(","):  # e.g. "0-2,4"
            first, _, last = part.partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
        out.add(frozenset(cpus))
    return out


def test_cli_preloads_p4info_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "switch.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "p4cf_kit.switch.embedded", "--grpc-server-addr", f"127.0.0.1:{port}",
         "--p4info", str(P4INFO_TXT), "--device-id", "3", "--log-file", str(log)],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=15)
        stub = p4runtime_pb2_grpc.P4RuntimeStub(channel)
        reply = stub.GetForwardingPipelineConfig(p4runtime_pb2.GetForwardingPipelineConfigRequest(
            device_id=3, response_type=p4runtime_pb2.GetForwardingPipelineConfigRequest.P4INFO_AND_COOKIE))
        assert reply.config.p4info == SCHEMA.p4info
        control = control_plane_cpu("auto", os.sched_getaffinity(0))  # the CLI's default
        if control is not None:  # every thread serves the control plane: all on that CPU
            assert thread_cpus(proc.pid) == {frozenset({control})}
        sh.setup(device_id=3, grpc_addr=f"127.0.0.1:{port}", election_id=(0, 1), verbose=False)
        try:
            nh = sh.TableEntry("MyIngress.ecmp_nhop")(action="MyIngress.drop")
            nh.match["meta.ecmp_select"] = "1"
            nh.insert()
        finally:
            sh.teardown()
        channel.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert "pipeline committed" in log.read_text()
        assert "signal 15: stopping" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", port))


@pytest.mark.netns
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (kit-owned network namespaces)")
def test_cli_with_ports_forwards_what_p4runtime_programs(tmp_path: Path) -> None:
    """`p4cf switch -i 1@.. -i 2@.. --pcap` in a netns, programmed over P4Runtime (unix socket)."""
    from p4cf_kit.netns import StarTopology, popen_in

    def mac(i: int, topo: StarTopology) -> str:
        return topo.host_mac(i).replace(":", "")

    with StarTopology(f"p4cf-t-{os.getpid() % 4096:03x}r-", 2) as topo:
        sock_path = tmp_path / "p4rt.sock"
        addr = f"unix:{sock_path}"
        proc = popen_in(topo.switch_ns, [
            sys.executable, "-m", "p4cf_kit.switch.embedded", "--grpc-server-addr", addr,
            "-i", f"1@{topo.switch_if(1)}", "-i", f"2@{topo.switch_if(2)}",
            "--p4info", str(P4INFO_TXT), "--pcap", str(tmp_path / "pcap"),
            "--log-file", str(tmp_path / "switch.log")],
            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        socks = []
        try:
            channel = grpc.insecure_channel(addr)
            grpc.channel_ready_future(channel).result(timeout=15)
            sh.setup(device_id=1, grpc_addr=addr, election_id=(0, 1), verbose=False)
            try:
                g = sh.TableEntry("MyIngress.ecmp_group")(action="MyIngress.set_ecmp_select")
                g.match["hdr.ipv4.dstAddr"] = "10.0.0.100/32"
                g.action["ecmp_base"], g.action["ecmp_count"] = "1", "1"
                g.insert()
                nh = shell_nhop("1", topo.host_mac(2), topo.host_ip(2), "2")
                nh.insert()
                sf = sh.TableEntry("MyEgress.send_frame")(action="MyEgress.rewrite_mac")
                sf.match["standard_metadata.egress_port"] = "2"
                sf.action["smac"] = topo.SWITCH_MAC
                sf.insert()

                h1 = packet_socket(topo.host_ns(1), topo.HOST_IF)
                h2 = packet_socket(topo.host_ns(2), topo.HOST_IF)
                socks += [h1, h2]
                h2.settimeout(0.2)
                frame = bytearray(_tcp_frame(int.from_bytes(bytes([10, 0, 1, 1]), "big"),
                                             0x0A000064, 40001, 5001))
                frame[0:6] = bytes.fromhex(topo.SWITCH_MAC.replace(":", ""))
                frame[6:12] = bytes.fromhex(mac(1, topo))
                h1.send(bytes(frame))
                got = receive_tcp_to(h2, 5001, timeout=3)
                assert got is not None, "the frame did not reach host 2"
                assert got[0:6] == bytes.fromhex(mac(2, topo))  # set_nhop's dmac
                assert got[30:34] == bytes([10, 0, 2, 1])  # DNAT to host 2
                (counted,) = list(sh.DirectCounterEntry("MyIngress.nhop_counter").read())
                assert counted.packet_count == 1
                allowed = os.sched_getaffinity(0)
                control = control_plane_cpu("auto", allowed)
                if control is not None:  # the data plane thread runs on the other CPUs
                    assert thread_cpus(proc.pid) == {frozenset({control}),
                                                     frozenset(allowed - {control})}
            finally:
                sh.teardown()
                channel.close()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
            assert any((tmp_path / "pcap").iterdir())
        finally:
            for s in socks:
                s.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_missing_interface_is_a_switch_error() -> None:
    sw = EmbeddedSwitch(grpc_addr="127.0.0.1:0", ports={1: "p4cf-nosuch0"})
    with pytest.raises(SwitchError, match="p4cf-nosuch0"):
        sw.start()
    sw.stop()
