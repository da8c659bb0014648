"""Migration phase records: what each migration took, phase by phase.

The migration code produces one record per migration (a dict, or a row of
`migrations.csv` / an item of `migrations.json`):

    migration         int    1, 2, ... in the order run
    src, dst          str    host the backend left and the host it went to (h2 -> h4)
    checkpoint_s      float  podman container checkpoint until CRIU has written the images, seconds
    rewrite_s         float  rewriting the checkpoint for the new address
    transfer_s        float  (optional) moving the images to another machine; absent or empty
                             for a migration within one machine
    restore_s         float  the staged restore on dst, from its gate opening, seconds
    switch_s          float  reprogramming the load balancer
    total_s           float  wall time of the whole migration (>= the phase sum)
    checkpoint_bytes  int    size of the CRIU images
    t_start_ns        int    CLOCK_REALTIME ns when the migration started
    t_end_ns          int    CLOCK_REALTIME ns when it finished
    ok                bool   False when it failed (and was rolled back)
    backend           str    (optional) id of the backend that moved, as its server reports
                             it (P4CF_HOST_ID, e.g. h2); it stays h2 when it moves back
                             from h4, so set it whenever src is not the backend's own id

Phases are taken to run one after another in PHASES order from t_start_ns; the
time not covered by them is `other_s` (total - sum of phases).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

PHASES: tuple[str, ...] = ("checkpoint", "rewrite", "transfer", "restore", "switch")
PHASE_COLUMNS: tuple[str, ...] = tuple(f"{p}_s" for p in PHASES)
OPTIONAL_PHASE_COLUMNS: tuple[str, ...] = ("transfer_s",)   # only migrations across machines have it
PHASE_RECORD_FIELDS: tuple[str, ...] = (
    "migration", "src", "dst", *(c for c in PHASE_COLUMNS if c not in OPTIONAL_PHASE_COLUMNS), "total_s",
    "checkpoint_bytes", "t_start_ns", "t_end_ns", "ok",
)
TRANSFER_FIELDS: tuple[str, ...] = ("transfer_bytes", "transfer_mb_s")
OPTIONAL_FIELD = "backend"
FROZEN_FIELD = "criu_dump_s"      # CRIU's frozen time inside the checkpoint phase (Podman --print-stats)
NS = 1_000_000_000


def phases_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Phase records as a typed DataFrame (one row per migration), plus `other_s`.

    Raises ValueError naming the missing fields when a record is incomplete.
    """
    rows = [dict(r) for r in records]
    for i, row in enumerate(rows):
        missing = [f for f in PHASE_RECORD_FIELDS if f not in row]
        if missing:
            raise ValueError(f"migration record {i} lacks {missing}; expected fields {PHASE_RECORD_FIELDS}")
    columns = list(PHASE_RECORD_FIELDS) + [field for field in (*OPTIONAL_PHASE_COLUMNS, OPTIONAL_FIELD,
                                                               FROZEN_FIELD, *TRANSFER_FIELDS)
                                           if any(field in r for r in rows)]
    frame = pd.DataFrame(rows, columns=columns)
    return typed_phases(frame)


def typed_phases(frame: pd.DataFrame) -> pd.DataFrame:
    """Give a phase table (from records or CSV) the documented dtypes and `other_s`."""
    out = frame.copy()
    for column in OPTIONAL_PHASE_COLUMNS:
        if column not in out.columns:
            out[column] = float("nan")
    for column in ("migration", "checkpoint_bytes", "t_start_ns", "t_end_ns"):
        out[column] = pd.to_numeric(out[column], errors="coerce").astype("Int64")
    for column in (*PHASE_COLUMNS, "total_s", FROZEN_FIELD, *TRANSFER_FIELDS):
        if column in out.columns:
            out[column] = pd.to_numeric(out[column], errors="coerce").astype("float64")
    for column in ("src", "dst", OPTIONAL_FIELD):
        if column not in out.columns:
            continue
        out[column] = out[column].astype("string")
    out["ok"] = out["ok"].map(lambda v: str(v).strip().lower() in ("true", "1", "yes")).astype(bool)
    out["other_s"] = (out["total_s"] - out[list(PHASE_COLUMNS)].fillna(0).sum(axis=1)).clip(lower=0)
    return out.sort_values("migration").reset_index(drop=True)


def load_phases(path: str | Path) -> pd.DataFrame:
    """Read phase records from `migrations.json` (a list of records) or a CSV of them."""
    path = Path(path)
    if path.suffix == ".json":
        return phases_frame(json.loads(path.read_text()))
    return typed_phases(pd.read_csv(path))


def record_window_ns(record: Mapping[str, Any] | pd.Series) -> tuple[int, int]:
    """(start, end) of a migration in ns. A failed one may lack t_end_ns: then start + total_s,
    or the start itself when even that is missing."""
    start = int(record["t_start_ns"])
    end = record.get("t_end_ns") if hasattr(record, "get") else None
    if end is not None and not pd.isna(end):
        return start, int(end)
    total = record.get("total_s") if hasattr(record, "get") else None
    if total is not None and not pd.isna(total):
        return start, start + int(float(total) * NS)
    return start, start


def phase_windows(record: Mapping[str, Any] | pd.Series) -> pd.DataFrame:
    """Start and end (ns) of each phase of one migration, laid end to end from t_start_ns.

    Columns: phase, start_ns, end_ns. Phases with no duration recorded are left out.
    """
    start = int(record["t_start_ns"])
    rows = []
    for phase, column in zip(PHASES, PHASE_COLUMNS):
        seconds = record[column]
        if seconds is None or pd.isna(seconds):
            continue
        end = start + int(round(float(seconds) * NS))
        rows.append({"phase": phase, "start_ns": start, "end_ns": end})
        start = end
    return pd.DataFrame(rows, columns=["phase", "start_ns", "end_ns"])


def phase_breakdown(phases: pd.DataFrame) -> pd.DataFrame:
    """Per migration: seconds of each phase and other_s (the figure's data). Successful ones only.

    When the records carry CRIU's frozen time, the checkpoint is also split into
    `before_freeze_s` (Podman and runc getting there: the backend still serves) and `frozen_s`
    (the part clients feel), since the two differ by a factor of two or more."""
    ok = phases[phases["ok"]]
    out = ok[["migration", "src", "dst", *PHASE_COLUMNS, "other_s", "total_s"]].reset_index(drop=True)
    if FROZEN_FIELD in ok.columns and ok[FROZEN_FIELD].notna().all() and len(ok):
        frozen = ok[FROZEN_FIELD].to_numpy()
        checkpoint = ok["checkpoint_s"].to_numpy()
        out["frozen_s"] = [min(f, c) for f, c in zip(frozen, checkpoint)]
        out["before_freeze_s"] = out["checkpoint_s"] - out["frozen_s"]
    return out


def migration_label(record: Mapping[str, Any] | pd.Series) -> str:
    """`m1 h2→h4` (`m2 h4→h2 (failed)` when rolled back): how figures name a migration."""
    ok = record.get("ok", True) if hasattr(record, "get") else True
    failed = ok is not None and not pd.isna(ok) and str(ok).strip().lower() in ("false", "0", "no")
    return f"m{int(record['migration'])} {record['src']}→{record['dst']}" + (" (failed)" if failed else "")


def migration_markers(phases: pd.DataFrame, t0_ns: int) -> pd.DataFrame:
    """Vertical markers for time plots: one per migration at its start, labelled `m1 h2→h4`.

    Columns: t_s (seconds since t0_ns), label. Pool changes can be appended as rows too.
    """
    rows = [{"t_s": (int(r["t_start_ns"]) - t0_ns) / NS, "label": migration_label(r)} for _, r in phases.iterrows()]
    return pd.DataFrame(rows, columns=["t_s", "label"])
