"""Check that a P4Info describes the BMv2 JSON it is pushed with, before BMv2 starts.

Why: simple_switch_grpc (PI) takes a P4Info and a JSON that disagree (a key or parameter of
another width, a renamed action) without a word, and then rejects or silently truncates entries.
The two must come from one p4c run; this finds the first place where they do not, by name:
every P4Info table must be a JSON table with the same match fields (name, match kind, width)
and actions, every P4Info action a JSON action with the same parameters (name, width).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from p4.config.v1 import p4info_pb2

MATCH_KINDS = {p4info_pb2.MatchField.EXACT: "exact", p4info_pb2.MatchField.LPM: "lpm",
               p4info_pb2.MatchField.TERNARY: "ternary", p4info_pb2.MatchField.RANGE: "range",
               p4info_pb2.MatchField.OPTIONAL: "optional"}


def _field_widths(program: dict[str, Any]) -> dict[tuple[str, str], int]:
    """(header instance, field) -> width, from the JSON's headers and header_types."""
    types = {t["name"]: {f[0]: f[1] for f in t["fields"]} for t in program.get("header_types", [])}
    out: dict[tuple[str, str], int] = {}
    for h in program.get("headers", []):
        for name, width in types.get(h["header_type"], {}).items():
            out[(h["name"], name)] = width
    return out


def json_p4info_difference(bmv2_json: Path, p4info: p4info_pb2.P4Info) -> str | None:
    """None when `p4info` describes `bmv2_json`, else the first difference, named."""
    try:
        program = json.loads(Path(bmv2_json).read_text())
    except (OSError, ValueError) as exc:
        return f"{bmv2_json} is not a BMv2 JSON: {exc}"
    actions: dict[str, list[tuple[str, int]]] = {}
    for a in program.get("actions", []):
        actions.setdefault(a["name"], [(r["name"], r["bitwidth"]) for r in a.get("runtime_data", [])])
    names = {a.preamble.id: a.preamble.name for a in p4info.actions}
    for a in p4info.actions:
        params = [(p.name, p.bitwidth) for p in a.params]
        if a.preamble.name not in actions:
            return f"action {a.preamble.name} is in the P4Info but not in the JSON"
        if actions[a.preamble.name] != params:
            return (f"action {a.preamble.name}: P4Info parameters {params}, "
                    f"JSON {actions[a.preamble.name]}")
    tables = {t["name"]: t for p in program.get("pipelines", []) for t in p.get("tables", [])}
    widths = _field_widths(program)
    for t in p4info.tables:
        jt = tables.get(t.preamble.name)
        if jt is None:
            return f"table {t.preamble.name} is in the P4Info but not in the JSON"
        keys = [(k["name"], k["match_type"], widths.get(tuple(k["target"]))) for k in jt.get("key", [])
                if len(k.get("target", ())) == 2]
        fields = [(m.name, MATCH_KINDS.get(m.match_type, "?"), m.bitwidth) for m in t.match_fields]
        if keys != fields:
            return f"table {t.preamble.name}: P4Info match fields {fields}, JSON {keys}"
        wanted = {names.get(r.id, str(r.id)) for r in t.action_refs}
        if wanted != set(jt.get("actions", [])):
            return f"table {t.preamble.name}: P4Info actions {sorted(wanted)}, JSON {sorted(jt.get('actions', []))}"
    return None
