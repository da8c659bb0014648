"""Per-next-hop traffic from the switch: the direct counter `nhop_counter` on ecmp_nhop.

Why from the switch: the client log says what the client saw; the counters say
what the data plane forwarded, per slot, so the two can be checked against each
other. Rows are read with a wildcard Read asking for counter data; a target that
does not return counter data with table entries is asked through
DirectCounterEntry instead.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from p4cf_kit.control.entries import as_int, ip_str, mac_str, read_table
from p4cf_kit.control.loadbalancer import CLIENT_INDEX, ECMP_NHOP
from p4cf_kit.errors import SwitchError

COLUMNS = ["index", "role", "ip", "mac", "port", "packets", "bytes"]


def _direct_counter_rows() -> dict[int, tuple[int, int]]:
    import p4runtime_sh.shell as sh
    out: dict[int, tuple[int, int]] = {}
    try:
        for c in sh.DirectCounterEntry("MyIngress.nhop_counter").read():
            msg = c.msg()
            idx = as_int(msg.table_entry.match[0].exact.value) if msg.table_entry.match else 0
            out[idx] = (msg.data.packet_count, msg.data.byte_count)
    except Exception as exc:
        raise SwitchError(f"reading MyIngress.nhop_counter failed: {str(exc).strip()}") from None
    return out


def read_counters(base: int = 1, count: int | None = None) -> pd.DataFrame:
    """One row per ecmp_nhop entry: slot index, role (client/backend/spare), next hop, packets, bytes."""
    rows: list[dict[str, Any]] = []
    missing = False
    for e in read_table(ECMP_NHOP, with_counters=True):
        idx = as_int(e.match["meta.ecmp_select"].exact.value)
        if e.packets is None:
            missing = True
        role = "client" if idx == CLIENT_INDEX else (
            "backend" if count is None or base <= idx < base + count else "spare")
        rows.append({"index": idx, "role": role,
                     "ip": ip_str(e.params["nhop_ipv4"]) if "nhop_ipv4" in e.params else "",
                     "mac": mac_str(e.params["nhop_dmac"]) if "nhop_dmac" in e.params else "",
                     "port": as_int(e.params.get("port", b"")),
                     "packets": e.packets or 0, "bytes": e.bytes or 0})
    if missing:
        direct = _direct_counter_rows()
        for r in rows:
            r["packets"], r["bytes"] = direct.get(r["index"], (r["packets"], r["bytes"]))
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values("index").reset_index(drop=True)
