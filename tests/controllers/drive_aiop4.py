"""Drive a P4Runtime switch with aiop4 (as published on PyPI, unmodified); print one JSON report.

Run with aiop4's own Python (scripts/setup-controllers.sh). aiop4 has no Read call of its own,
so reads go through the gRPC stub its client holds. Usage: drive_aiop4.py ADDRESS DEVICE_ID P4INFO
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

import p4.v1.p4runtime_pb2 as p4r
from aiop4.client import Client
from google.rpc import status_pb2
from grpc.aio import AioRpcError

NHOP = "MyIngress.ecmp_nhop"


def nhop(client: Client, select: int, port: int) -> p4r.Entity:
    return client.new_table_entry(
        NHOP, {"meta.ecmp_select": p4r.FieldMatch.Exact(value=select.to_bytes(2, "big"))},
        "MyIngress.set_nhop", [(0x0A0000000000 + select).to_bytes(6, "big"), bytes([10, 0, 0, select]),
                               port.to_bytes(2, "big")])


async def read(client: Client, *entities: p4r.Entity) -> list[p4r.Entity]:
    out: list[p4r.Entity] = []
    async for reply in client._stub.Read(p4r.ReadRequest(device_id=client.device_id, entities=entities)):
        out.extend(reply.entities)
    return out


async def error_of(coro) -> dict:
    try:
        await coro
    except AioRpcError as exc:
        codes = []
        for key, value in exc.trailing_metadata() or ():
            if key == "grpc-status-details-bin":
                status = status_pb2.Status.FromString(value)
                for detail in status.details:
                    err = p4r.Error()
                    detail.Unpack(err)
                    codes.append(err.canonical_code)
        return {"code": exc.code().name, "details": codes}
    return {"code": "OK", "details": []}


async def drive(address: str, device_id: int, p4info: Path) -> dict:
    report: dict = {}
    client = Client(address, device_id=device_id, election_id=p4r.Uint128(high=0, low=7))
    await client.become_primary_or_raise(timeout=10)
    report["primary"] = client.is_primary()
    with tempfile.NamedTemporaryFile(suffix=".json") as blob:  # the embedded switch ignores it
        blob.write(b"{}")
        blob.flush()
        await client.set_fwd_pipeline_from_file(str(p4info), blob.name, cookie=42)
    report["cookie"] = (await client.get_fwd_pipeline()).config.cookie.cookie
    await client.insert_entity(*(nhop(client, i, 2 + i) for i in range(3)))
    report["wildcard_read"] = len(await read(client, p4r.Entity(table_entry=p4r.TableEntry())))
    await client.modify_entity(nhop(client, 1, 9))
    one = p4r.Entity(table_entry=p4r.TableEntry(table_id=client.elems_info.tables[NHOP].preamble.id))
    entries = await read(client, one)
    report["ports"] = sorted(int.from_bytes(e.table_entry.action.action.params[2].value, "big")
                             for e in entries)
    report["insert_existing"] = await error_of(client.insert_entity(nhop(client, 0, 2)))
    report["delete_missing"] = await error_of(client.delete_entity(nhop(client, 99, 2)))
    await client.insert_multicast_group(3, [2, 3])
    pre = p4r.Entity(packet_replication_engine_entry=p4r.PacketReplicationEngineEntry(
        multicast_group_entry=p4r.MulticastGroupEntry()))
    report["groups"] = [e.packet_replication_engine_entry.multicast_group_entry.multicast_group_id
                        for e in await read(client, pre)]
    report["group_again"] = await error_of(client.insert_multicast_group(3, [2]))
    # a reset by hand: delete every table entry and group that a wildcard read returns
    everything = await read(client, p4r.Entity(table_entry=p4r.TableEntry()), pre)
    await client.delete_entity(*everything)
    report["after_reset"] = len(await read(client, p4r.Entity(table_entry=p4r.TableEntry()), pre))
    if client._stream_control_task is not None:
        client._stream_control_task.cancel()
    await client._channel.close()
    return report


def main() -> int:
    address, device_id, p4info = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    print(json.dumps(asyncio.run(drive(address, device_id, p4info)), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
