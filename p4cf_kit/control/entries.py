"""Small typed wrappers over p4runtime-shell table entries: write, upsert, wildcard read.

Why: the shell takes and gives protobuf pieces (strings in, bytes out); the rest of
the controller wants Python values and SwitchError messages that name the table.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from p4cf_kit.errors import SwitchError


def _sh() -> Any:  # p4runtime-shell has no types
    import p4runtime_sh.shell as sh
    return sh


def mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw.rjust(6, b"\0")[-6:])


def ip_str(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw.rjust(4, b"\0")[-4:]))


def as_int(raw: bytes) -> int:
    return int.from_bytes(raw, "big") if raw else 0


@dataclass(frozen=True)
class ReadEntry:
    """One entry read from the switch: its match fields and action, as raw bytes by name."""

    table: str
    match: dict[str, Any]          # field name -> FieldMatch protobuf
    action: str                    # short action name, e.g. "set_nhop"
    params: dict[str, bytes]
    packets: int | None = None
    bytes: int | None = None


def make_entry(table: str, match: dict[str, str], action: str, params: dict[str, str]) -> Any:
    """A p4runtime-shell TableEntry ready to insert/modify."""
    sh = _sh()
    te = sh.TableEntry(table)(action=action)
    for k, v in match.items():
        te.match[k] = v
    for k, v in params.items():
        te.action[k] = v
    return te


def write(te: Any, op: str) -> None:
    """INSERT/MODIFY/DELETE one entry; SwitchError naming the table and the switch's reason."""
    try:
        getattr(te, op)()
    except Exception as exc:  # P4RuntimeWriteException, UserError, grpc errors
        raise SwitchError(f"{op} on {te.name} failed: {str(exc).strip()}") from None


def upsert(te: Any) -> None:
    """INSERT the entry, or MODIFY it when one with the same key exists."""
    try:
        te.insert()
    except Exception as exc:
        if "ALREADY_EXISTS" not in str(exc) and "already exist" not in str(exc).lower():
            raise SwitchError(f"insert on {te.name} failed: {str(exc).strip()}") from None
        write(te, "modify")


def read_table(table: str, with_counters: bool = False) -> Iterator[ReadEntry]:
    """Wildcard-read every entry of `table` from the switch (optionally with direct counters)."""
    sh = _sh()
    query = sh.TableEntry(table)
    if with_counters:
        query.counter_data  # noqa: B018  (touching it asks the switch for counter data)
    try:
        for e in query.read():
            packets = byte_count = None
            msg = e.msg()
            if with_counters and msg.HasField("counter_data"):
                packets, byte_count = msg.counter_data.packet_count, msg.counter_data.byte_count
            params: dict[str, bytes] = {}
            action = ""
            if msg.action.HasField("action"):
                action = e.action.action_name.split(".")[-1]
                for name in list(e.action._param_values):  # filled by _from_msg
                    params[name] = e.action._param_values[name].value
            yield ReadEntry(table=table, match=dict(e.match._mk), action=action, params=params,
                            packets=packets, bytes=byte_count)
    except SwitchError:
        raise
    except Exception as exc:
        raise SwitchError(f"reading {table} failed: {str(exc).strip()}") from None


def delete_key(table: str, match: dict[str, str]) -> None:
    """DELETE the entry of `table` with `match` (the action is not needed for a delete)."""
    sh = _sh()
    te = sh.TableEntry(table)
    for k, v in match.items():
        te.match[k] = v
    write(te, "delete")


def clear_table(table: str) -> int:
    """DELETE every entry of `table` (wildcard read, then one delete each); returns how many."""
    sh = _sh()
    try:
        found = list(sh.TableEntry(table).read())
    except Exception as exc:
        raise SwitchError(f"reading {table} failed: {str(exc).strip()}") from None
    for te in found:
        write(te, "delete")
    return len(found)
