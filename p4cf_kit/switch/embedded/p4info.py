"""The load balancer's P4Info, loaded and indexed by id and by name for the server.

Also holds p4c's id scheme (so tests can check the shipped P4Info's ids without p4c) and the
"same in substance" comparison the server uses to accept or refuse a pipeline: what a client
can observe through P4Runtime (ids, names, widths, match kinds, action refs, sizes, counters)
must match; aliases, annotations and documentation may differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from google.protobuf import text_format
from p4.config.v1 import p4info_pb2

from p4cf_kit.paths import P4INFO_TXT

PREFIX_ACTION = p4info_pb2.P4Ids.ACTION
PREFIX_TABLE = p4info_pb2.P4Ids.TABLE
PREFIX_DIRECT_COUNTER = p4info_pb2.P4Ids.DIRECT_COUNTER

EXACT = p4info_pb2.MatchField.EXACT
LPM = p4info_pb2.MatchField.LPM
TERNARY = p4info_pb2.MatchField.TERNARY
RANGE = p4info_pb2.MatchField.RANGE
OPTIONAL = p4info_pb2.MatchField.OPTIONAL

SCOPE_TABLE_AND_DEFAULT = p4info_pb2.ActionRef.TABLE_AND_DEFAULT
SCOPE_TABLE_ONLY = p4info_pb2.ActionRef.TABLE_ONLY
SCOPE_DEFAULT_ONLY = p4info_pb2.ActionRef.DEFAULT_ONLY


# --- p4c's id scheme -------------------------------------------------------------------------

def jenkins_one_at_a_time(data: bytes) -> int:
    """Bob Jenkins' one-at-a-time hash (32 bit), the hash p4c applies to control-plane names."""
    h = 0
    for byte in data:
        h = (h + byte) & 0xFFFFFFFF
        h = (h + (h << 10)) & 0xFFFFFFFF
        h ^= h >> 6
    h = (h + (h << 3)) & 0xFFFFFFFF
    h ^= h >> 11
    h = (h + (h << 15)) & 0xFFFFFFFF
    return h


def p4c_ids(symbols: Mapping[int, Iterable[str]]) -> dict[tuple[int, str], int]:
    """Ids p4c assigns to names without @id: {prefix: names} -> {(prefix, name): id}.

    Resource types are handled in increasing prefix order and names in sorted order, because
    collisions are resolved by linear probing on the hash value (not on the id), so the result
    depends on that order. Every id is unique across all resource types.
    """
    assigned: set[int] = set()
    ids: dict[tuple[int, str], int] = {}
    for prefix in sorted(symbols):
        for name in sorted(set(symbols[prefix])):
            value = jenkins_one_at_a_time(name.encode())
            start = value
            while ((prefix << 24) | (value & 0xFFFFFF)) in assigned:
                value = (value + 1) & 0xFFFFFFFF
                if value == start:
                    raise ValueError(f"no P4Runtime id left for {name}")
            ident = (prefix << 24) | (value & 0xFFFFFF)
            assigned.add(ident)
            ids[(prefix, name)] = ident
    return ids


def p4c_aliases(names: Iterable[str]) -> dict[str, str]:
    """p4c's default alias: the shortest dot-separated suffix no other name shares."""
    unique = sorted(set(names))
    parts = {name: name.split(".") for name in unique}
    aliases: dict[str, str] = {}
    for name, comps in parts.items():
        for n in range(1, len(comps) + 1):
            suffix = comps[-n:]
            sharing = sum(1 for other in parts.values() if other[-n:] == suffix)
            if sharing < 2:
                break
        aliases[name] = ".".join(suffix)
    return aliases


# --- the indexed schema ----------------------------------------------------------------------

@dataclass(frozen=True)
class MatchFieldInfo:
    id: int
    name: str
    bitwidth: int
    match_type: int


@dataclass(frozen=True)
class ParamInfo:
    id: int
    name: str
    bitwidth: int


@dataclass(frozen=True)
class ActionInfo:
    id: int
    name: str
    alias: str
    params: tuple[ParamInfo, ...]

    @cached_property
    def short_name(self) -> str:
        """The name without its control (`MyIngress.set_nhop` -> `set_nhop`), as the data plane uses."""
        return self.name.rsplit(".", 1)[-1]

    @cached_property
    def params_by_id(self) -> dict[int, ParamInfo]:
        """Params by id (cached: every write looks each of its params up)."""
        return {p.id: p for p in self.params}


@dataclass(frozen=True)
class DirectCounterInfo:
    id: int
    name: str
    alias: str
    unit: int
    table_id: int


@dataclass(frozen=True)
class TableInfo:
    id: int
    name: str
    alias: str
    match_fields: tuple[MatchFieldInfo, ...]
    action_scopes: Mapping[int, int]  # action id -> ActionRef scope
    size: int
    const_default_action_id: int
    direct_counter_id: int  # 0 when the table has none

    @cached_property
    def fields_by_id(self) -> dict[int, MatchFieldInfo]:
        """Match fields by id (cached: every write looks each of its fields up)."""
        return {f.id: f for f in self.match_fields}

    @property
    def needs_priority(self) -> bool:
        return any(f.match_type in (TERNARY, RANGE, OPTIONAL) for f in self.match_fields)


class P4Schema:
    """A P4Info indexed for the server: tables, actions and direct counters by id and by name."""

    def __init__(self, p4info: p4info_pb2.P4Info) -> None:
        self.p4info = p4info
        self.actions: dict[int, ActionInfo] = {}
        for a in p4info.actions:
            params = tuple(ParamInfo(p.id, p.name, p.bitwidth) for p in a.params)
            self.actions[a.preamble.id] = ActionInfo(a.preamble.id, a.preamble.name,
                                                     a.preamble.alias, params)
        self.direct_counters: dict[int, DirectCounterInfo] = {}
        for c in p4info.direct_counters:
            self.direct_counters[c.preamble.id] = DirectCounterInfo(
                c.preamble.id, c.preamble.name, c.preamble.alias, c.spec.unit, c.direct_table_id)
        counter_of_table = {c.table_id: c.id for c in self.direct_counters.values()}
        self.tables: dict[int, TableInfo] = {}
        for t in p4info.tables:
            fields = tuple(MatchFieldInfo(f.id, f.name, f.bitwidth, f.match_type)
                           for f in t.match_fields)
            scopes = {r.id: r.scope for r in t.action_refs}
            self.tables[t.preamble.id] = TableInfo(
                t.preamble.id, t.preamble.name, t.preamble.alias, fields, scopes, t.size,
                t.const_default_action_id, counter_of_table.get(t.preamble.id, 0))
        self._by_name = {**{a.name: a for a in self.actions.values()},
                         **{t.name: t for t in self.tables.values()},
                         **{c.name: c for c in self.direct_counters.values()}}

    def table_by_name(self, name: str) -> TableInfo:
        item = self._by_name.get(name)
        if not isinstance(item, TableInfo):
            raise KeyError(f"no table named {name!r} in the P4Info")
        return item

    def action_by_name(self, name: str) -> ActionInfo:
        item = self._by_name.get(name)
        if not isinstance(item, ActionInfo):
            raise KeyError(f"no action named {name!r} in the P4Info")
        return item

    def substance(self) -> dict[str, object]:
        """What a P4Runtime client can observe, keyed by section, for `substance_difference`."""
        return {
            "tables": {t.id: (t.name, t.match_fields, dict(t.action_scopes), t.size,
                              t.const_default_action_id, t.direct_counter_id)
                       for t in self.tables.values()},
            "actions": {a.id: (a.name, a.params) for a in self.actions.values()},
            "direct counters": {c.id: (c.name, c.unit, c.table_id)
                                for c in self.direct_counters.values()},
            "other resources": self._other_resources(),
        }

    def _other_resources(self) -> tuple[str, ...]:
        """Sections the embedded target has no implementation for (must stay empty)."""
        names = ("action_profiles", "counters", "meters", "direct_meters",
                 "controller_packet_metadata", "value_sets", "registers", "digests", "externs")
        return tuple(n for n in names if len(getattr(self.p4info, n)))


def substance_difference(expected: P4Schema, offered: P4Schema) -> str | None:
    """None when both P4Infos are the same in substance, else the first difference, in words."""
    want, got = expected.substance(), offered.substance()
    for section in want:
        w, g = want[section], got[section]
        if w == g:
            continue
        if isinstance(w, dict) and isinstance(g, dict):
            for ident in sorted(set(w) | set(g)):
                if ident not in g:
                    return f"{section}: id {ident} ({w[ident][0]}) is missing"
                if ident not in w:
                    return f"{section}: id {ident} ({g[ident][0]}) is not in this program"
                if w[ident] != g[ident]:
                    return f"{section}: id {ident} ({w[ident][0]}) differs: {g[ident]!r}"
        return f"{section}: not supported by the embedded target: {g!r}"
    return None


def load_p4info(path: str | Path) -> p4info_pb2.P4Info:
    """Parse a P4Info in protobuf text format."""
    message = p4info_pb2.P4Info()
    text_format.Parse(Path(path).read_text(), message)
    return message


def shipped_p4info() -> p4info_pb2.P4Info:
    """The P4Info of `p4/load_balance.p4` that ships with the kit."""
    return load_p4info(P4INFO_TXT)
