"""The shipped P4Info (p4/load_balance.p4info.txtpb) against the P4 program and p4c's id scheme.

Without p4c on the machine, the P4Info is checked two ways: a small parser of the program's
declarations (tables, keys, actions, direct counters; not a P4 compiler, it reads only this
program's style) must agree with it, and every id and alias must be what p4c's scheme gives.
With p4c on PATH, p4c's own output is compared too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from p4.config.v1 import p4info_pb2

from p4cf_kit.paths import P4_PROGRAM, P4INFO_TXT
from p4cf_kit.switch.embedded.entries import PROGRAM_DEFAULT_ACTIONS
from p4cf_kit.switch.embedded.p4info import (
    PREFIX_ACTION,
    PREFIX_DIRECT_COUNTER,
    PREFIX_TABLE,
    P4Schema,
    jenkins_one_at_a_time,
    load_p4info,
    p4c_aliases,
    p4c_ids,
    substance_difference,
)

# v1model's standard_metadata_t fields this program matches on (v1model.p4 is not shipped).
V1MODEL_STANDARD_METADATA = {"ingress_port": 9, "egress_spec": 9, "egress_port": 9}
MATCH_KINDS = {"exact": p4info_pb2.MatchField.EXACT, "lpm": p4info_pb2.MatchField.LPM,
               "ternary": p4info_pb2.MatchField.TERNARY}
COUNTER_UNITS = {"packets": p4info_pb2.CounterSpec.PACKETS, "bytes": p4info_pb2.CounterSpec.BYTES,
                 "packets_and_bytes": p4info_pb2.CounterSpec.BOTH}


# --- a small parser of the program's declarations --------------------------------------------

@dataclass
class ParsedTable:
    name: str
    keys: list[tuple[str, str]]  # (expression, match kind)
    actions: list[str]
    size: int
    default_action: str
    const_default: bool
    counter: str | None


@dataclass
class ParsedProgram:
    widths: dict[str, int] = field(default_factory=dict)  # "hdr.ipv4.dstAddr" -> 32
    actions: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # qualified -> params
    tables: dict[str, ParsedTable] = field(default_factory=dict)
    direct_counters: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (unit, table)


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def _block(text: str, open_at: int) -> tuple[str, int]:
    """The text inside the braces opening at `open_at` and the index after the closing brace."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1:i], i + 1
    raise ValueError("unbalanced braces")


def _width(type_name: str, typedefs: dict[str, int]) -> int | None:
    m = re.fullmatch(r"bit<(\d+)>", type_name.replace(" ", ""))
    if m:
        return int(m.group(1))
    return typedefs.get(type_name)


def parse_program(path: Path) -> ParsedProgram:
    text = _strip_comments(path.read_text())
    prog = ParsedProgram()
    typedefs = {m.group(2): int(m.group(1))
                for m in re.finditer(r"typedef\s+bit<(\d+)>\s+(\w+)\s*;", text)}
    # headers and structs: field widths by type, then instance paths through the structs
    types: dict[str, dict[str, str]] = {}
    for m in re.finditer(r"\b(header|struct)\s+(\w+)\s*\{", text):
        body, _ = _block(text, m.end() - 1)
        types[m.group(2)] = {f.group(2): f.group(1) for f in
                             re.finditer(r"([\w<> ]+?)\s+(\w+)\s*;", body)}
    for param_type, param_name in (("headers", "hdr"), ("metadata", "meta")):
        for fname, ftype in types.get(param_type, {}).items():
            ftype = ftype.strip()
            if ftype in types:
                for sub, subtype in types[ftype].items():
                    w = _width(subtype.strip(), typedefs)
                    if w is not None:
                        prog.widths[f"{param_name}.{fname}.{sub}"] = w
            else:
                w = _width(ftype, typedefs)
                if w is not None:
                    prog.widths[f"{param_name}.{fname}"] = w
    for fname, w in V1MODEL_STANDARD_METADATA.items():
        prog.widths[f"standard_metadata.{fname}"] = w

    for m in re.finditer(r"\bcontrol\s+(\w+)\s*\([^)]*\)\s*\{", text):
        control = m.group(1)
        body, _ = _block(text, m.end() - 1)
        for c in re.finditer(r"direct_counter\s*\(\s*CounterType\.(\w+)\s*\)\s*(\w+)\s*;", body):
            prog.direct_counters[f"{control}.{c.group(2)}"] = (c.group(1), "")
        for a in re.finditer(r"\baction\s+(\w+)\s*\(([^)]*)\)\s*\{", body):
            params = []
            for p in filter(None, (s.strip() for s in a.group(2).split(","))):
                ptype, pname = p.rsplit(None, 1)
                params.append((pname, _width(ptype, typedefs)))
            prog.actions[f"{control}.{a.group(1)}"] = params
        for t in re.finditer(r"\btable\s+(\w+)\s*\{", body):
            tbody, _ = _block(body, t.end() - 1)
            kb = re.search(r"\bkey\s*=\s*\{", tbody)
            keys = re.findall(r"([\w.]+)\s*:\s*(\w+)\s*;", _block(tbody, kb.end() - 1)[0]) if kb else []
            ab = re.search(r"\bactions\s*=\s*\{", tbody)
            acts = re.findall(r"(\w+)\s*;", _block(tbody, ab.end() - 1)[0])
            size = re.search(r"\bsize\s*=\s*(\d+)\s*;", tbody)
            dflt = re.search(r"(\bconst\s+)?default_action\s*=\s*(\w+)", tbody)
            counter = re.search(r"\bcounters\s*=\s*(\w+)\s*;", tbody)
            name = f"{control}.{t.group(1)}"
            prog.tables[name] = ParsedTable(
                name, keys, [f"{control}.{a}" for a in acts], int(size.group(1)) if size else 0,
                f"{control}.{dflt.group(2)}" if dflt else "NoAction", bool(dflt and dflt.group(1)),
                f"{control}.{counter.group(1)}" if counter else None)
            if counter:
                unit, _ = prog.direct_counters[f"{control}.{counter.group(1)}"]
                prog.direct_counters[f"{control}.{counter.group(1)}"] = (unit, name)
    return prog


@pytest.fixture(scope="module")
def program() -> ParsedProgram:
    return parse_program(P4_PROGRAM)


@pytest.fixture(scope="module")
def p4info() -> p4info_pb2.P4Info:
    return load_p4info(P4INFO_TXT)


# --- the P4Info against the program ----------------------------------------------------------

def test_parser_reads_the_program(program: ParsedProgram) -> None:
    assert set(program.tables) == {"MyIngress.ecmp_group", "MyIngress.ecmp_nhop", "MyEgress.send_frame"}
    assert program.widths["meta.ecmp_select"] == 14
    assert program.actions["MyIngress.set_nhop"] == [("nhop_dmac", 48), ("nhop_ipv4", 32), ("port", 9)]


def test_tables_keys_and_sizes_match_the_program(program: ParsedProgram, p4info) -> None:
    names = {a.preamble.id: a.preamble.name for a in p4info.actions}
    assert {t.preamble.name for t in p4info.tables} == set(program.tables)
    for t in p4info.tables:
        parsed = program.tables[t.preamble.name]
        assert [(f.name, f.match_type, f.bitwidth) for f in t.match_fields] == [
            (expr, MATCH_KINDS[kind], program.widths[expr]) for expr, kind in parsed.keys]
        assert [f.id for f in t.match_fields] == list(range(1, len(parsed.keys) + 1))
        # every table has a default_action, so p4c adds no implicit NoAction and no @defaultonly
        assert [names[r.id] for r in t.action_refs] == parsed.actions
        assert all(r.scope == p4info_pb2.ActionRef.TABLE_AND_DEFAULT for r in t.action_refs)
        assert t.size == parsed.size
        assert t.const_default_action_id == 0 and not parsed.const_default
        assert PROGRAM_DEFAULT_ACTIONS[t.preamble.name] == parsed.default_action


def test_actions_and_params_match_the_program(program: ParsedProgram, p4info) -> None:
    assert {a.preamble.name for a in p4info.actions} == set(program.actions)
    assert "NoAction" not in {a.preamble.name for a in p4info.actions}
    for a in p4info.actions:
        assert [(p.name, p.bitwidth) for p in a.params] == program.actions[a.preamble.name]
        assert [p.id for p in a.params] == list(range(1, len(a.params) + 1))


def test_direct_counter_matches_the_program(program: ParsedProgram, p4info) -> None:
    tables = {t.preamble.name: t for t in p4info.tables}
    assert {c.preamble.name for c in p4info.direct_counters} == set(program.direct_counters)
    for c in p4info.direct_counters:
        unit, table = program.direct_counters[c.preamble.name]
        assert c.spec.unit == COUNTER_UNITS[unit]
        assert c.direct_table_id == tables[table].preamble.id
        assert list(tables[table].direct_resource_ids) == [c.preamble.id]
    for name, t in tables.items():
        if program.tables[name].counter is None:
            assert not t.direct_resource_ids
    assert p4info.pkg_info.arch == "v1model"


# --- ids and aliases: p4c's scheme -----------------------------------------------------------

def test_hash_gives_the_well_known_ids() -> None:
    # NoAction's id appears in every p4c-generated P4Info; MyIngress.drop in the P4 tutorials'.
    assert (PREFIX_ACTION << 24) | (jenkins_one_at_a_time(b"NoAction") & 0xFFFFFF) == 21257015
    assert p4c_ids({PREFIX_ACTION: ["MyIngress.drop"]})[(PREFIX_ACTION, "MyIngress.drop")] == 25652968


def test_prefixes_are_the_spec_ones() -> None:
    assert (PREFIX_ACTION, PREFIX_TABLE, PREFIX_DIRECT_COUNTER) == (0x01, 0x02, 0x13)


def test_collisions_probe_on_the_hash_value(monkeypatch: pytest.MonkeyPatch) -> None:
    # Force every name onto one hash: p4c takes names in sorted order and probes hash + 1, ...
    from p4cf_kit.switch.embedded import p4info as module
    monkeypatch.setattr(module, "jenkins_one_at_a_time", lambda data: 0x00FFFFFF)
    ids = p4c_ids({PREFIX_ACTION: ["b", "a", "c"]})
    assert [ids[(PREFIX_ACTION, n)] for n in "abc"] == [0x01FFFFFF, 0x01000000, 0x01000001]


def test_ids_and_aliases_are_p4cs(program: ParsedProgram, p4info) -> None:
    symbols = {PREFIX_ACTION: list(program.actions), PREFIX_TABLE: list(program.tables),
               PREFIX_DIRECT_COUNTER: list(program.direct_counters)}
    ids = p4c_ids(symbols)
    aliases = p4c_aliases(n for names in symbols.values() for n in names)
    entries = ([(PREFIX_ACTION, a.preamble) for a in p4info.actions]
               + [(PREFIX_TABLE, t.preamble) for t in p4info.tables]
               + [(PREFIX_DIRECT_COUNTER, c.preamble) for c in p4info.direct_counters])
    for prefix, pre in entries:
        assert pre.id == ids[(prefix, pre.name)], pre.name
        assert pre.alias == aliases[pre.name], pre.name
    # both controls declare `drop`, so neither can be aliased "drop"
    assert aliases["MyIngress.drop"] == "MyIngress.drop"
    assert aliases["MyIngress.ecmp_group"] == "ecmp_group"


# --- substance comparison used by SetForwardingPipelineConfig --------------------------------

def test_substance_ignores_aliases_but_not_widths(p4info) -> None:
    base = P4Schema(p4info)
    renamed = p4info_pb2.P4Info()
    renamed.CopyFrom(p4info)
    renamed.tables[0].preamble.alias = "another_alias"
    renamed.tables[0].preamble.annotations.append("@brief(\"x\")")
    assert substance_difference(base, P4Schema(renamed)) is None
    wider = p4info_pb2.P4Info()
    wider.CopyFrom(p4info)
    wider.actions[1].params[0].bitwidth = 17
    diff = substance_difference(base, P4Schema(wider))
    assert diff is not None and "MyIngress.set_ecmp_select" in diff


# --- p4c itself, when present ----------------------------------------------------------------

def test_p4c_generates_the_same_p4info(tmp_path: Path, p4info) -> None:
    """The shipped file is p4c's P4Info, message for message (ids, names, widths, sizes, and the
    `initial_default_action` p4c records for each table), not only in substance."""
    from p4cf_kit.switch.bmv2.compile import compile_program
    from p4cf_kit.switch.bmv2.toolchain import find_p4c
    tool = find_p4c()
    if tool is None:
        pytest.skip("p4c not found: install it (README 'BMv2 target'; CI installs it with `make p4lang`)")
    compiled = load_p4info(compile_program(P4_PROGRAM, tmp_path, tool).p4info)
    assert substance_difference(P4Schema(compiled), P4Schema(p4info)) is None
    assert compiled == p4info
    assert all(t.HasField("initial_default_action") for t in p4info.tables)
    ours = {(x.preamble.name, x.preamble.alias) for x in [*p4info.tables, *p4info.actions]}
    theirs = {(x.preamble.name, x.preamble.alias) for x in [*compiled.tables, *compiled.actions]}
    assert ours == theirs
