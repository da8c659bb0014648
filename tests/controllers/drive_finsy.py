"""Drive a P4Runtime switch with finsy (as published on PyPI, unmodified); print one JSON report.

Run with the controllers' own Python (scripts/setup-controllers.sh), not the kit's: finsy needs
a newer protobuf than the kit's pins. Usage: drive_finsy.py ADDRESS DEVICE_ID P4INFO
Every step records what it saw; the test (tests/test_controllers.py) checks the report.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import finsy as fy

NHOP = "MyIngress.ecmp_nhop"
GROUP = "MyIngress.ecmp_group"
SEND = "MyEgress.send_frame"


def nhop(select: int, port: int) -> fy.P4TableEntry:
    return fy.P4TableEntry(NHOP, match=fy.P4TableMatch({"meta.ecmp_select": select}),
                           action=fy.P4TableAction("MyIngress.set_nhop", nhop_dmac=0x0A0000000001 + select,
                                                   nhop_ipv4=0x0A000001 + select, port=port))


async def error_of(coro) -> dict:
    """The outer code and per-update codes of a write that must fail."""
    try:
        await coro
    except fy.P4ClientError as exc:
        return {"code": exc.code.name,
                "details": {str(i): e.canonical_code.name for i, e in exc.details.items()}}
    return {"code": "OK", "details": {}}


async def names(sw: fy.Switch, *entities) -> list[str]:
    out = []
    async for ent in sw.read(list(entities)):
        out.append(type(ent).__name__)
    return out


async def drive(address: str, device_id: int, p4info: Path) -> dict:
    report: dict = {}
    # The embedded switch runs its own program and ignores p4_device_config; finsy pushes a
    # pipeline only with one (p4blob), so it gets a placeholder.
    opts = fy.SwitchOptions(p4info=p4info, p4blob=b"embedded", device_id=device_id, p4force=True)
    async with fy.Switch("sw", address, opts) as sw:
        report["primary"] = sw.is_primary
        # writes: an LPM group entry, three next hops, egress rewrites
        await sw.insert([
            fy.P4TableEntry(GROUP, match=fy.P4TableMatch({"hdr.ipv4.dstAddr": "10.0.0.1/32"}),
                            action=fy.P4TableAction("MyIngress.set_ecmp_select", ecmp_base=0, ecmp_count=3)),
            nhop(0, 2), nhop(1, 3), nhop(2, 4),
            fy.P4TableEntry(SEND, match=fy.P4TableMatch({"standard_metadata.egress_port": 2}),
                            action=fy.P4TableAction("MyEgress.rewrite_mac", smac=0x020000000002)),
        ])
        report["wildcard_read"] = len([e async for e in sw.read(fy.P4TableEntry())])
        report["per_table_read"] = {t: len([e async for e in sw.read(fy.P4TableEntry(t))])
                                    for t in (GROUP, NHOP, SEND)}
        # MODIFY, then read the one entry back by its match
        await sw.modify([nhop(1, 7)])
        (one,) = [e async for e in sw.read(fy.P4TableEntry(NHOP, match=fy.P4TableMatch({"meta.ecmp_select": 1})))]
        report["modified_port"] = one.action.args["port"]
        # direct counters: write one, read all, read with the table entry
        await sw.modify([fy.P4DirectCounterEntry(table_entry=fy.P4TableEntry(
            NHOP, match=fy.P4TableMatch({"meta.ecmp_select": 2})),
            data=fy.P4CounterData(packet_count=5, byte_count=500))])
        counters = {}
        async for ce in sw.read(fy.P4DirectCounterEntry(table_entry=fy.P4TableEntry(NHOP))):
            counters[str(ce.table_entry.match["ecmp_select"])] = [ce.packet_count, ce.byte_count]
        report["counters"] = counters
        with_counter = [e async for e in sw.read(fy.P4TableEntry(NHOP, counter_data=fy.P4CounterData()))]
        report["entry_counter_data"] = sorted(e.counter_data.packet_count for e in with_counter
                                              if e.counter_data is not None)
        # errors: INSERT of an existing entry, DELETE of a missing one, MODIFY of a missing one
        report["insert_existing"] = await error_of(sw.insert([nhop(0, 2)]))
        report["delete_missing"] = await error_of(sw.delete([nhop(99, 2)]))
        report["modify_missing"] = await error_of(sw.modify([nhop(98, 2)]))
        # packet replication engine: a multicast group and a clone session, read, then removed
        await sw.insert([fy.P4MulticastGroupEntry(1, replicas=[(2, 0), (3, 0)]),
                         fy.P4CloneSessionEntry(5, replicas=[(4, 0)])])
        report["pre_read"] = await names(sw, fy.P4MulticastGroupEntry(), fy.P4CloneSessionEntry())
        report["mc_insert_existing"] = await error_of(sw.insert([fy.P4MulticastGroupEntry(1, replicas=[2])]))
        report["mc_delete_missing"] = await error_of(sw.delete([fy.P4MulticastGroupEntry(9)]))
        # a controller resetting the switch
        await sw.delete_all()
        report["after_delete_all"] = await names(sw, fy.P4TableEntry(), fy.P4MulticastGroupEntry(),
                                                 fy.P4CloneSessionEntry())
        defaults = [e async for e in sw.read(fy.P4TableEntry(NHOP, is_default_action=True))]
        report["nhop_default"] = defaults[0].action.name if defaults else None
    return report


def main() -> int:
    address, device_id, p4info = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    report = asyncio.run(drive(address, device_id, p4info))
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
