"""Migration records (whatever shape the migration room returns) as analysis rows.

Why: the panel and the notebooks take `lab.migrate(...)`'s record as it comes (a
MigrationRecord with `as_row()`, a dataclass, a mapping) and need the flat dict the
analysis room reads (analysis.PHASE_RECORD_FIELDS).
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any, Iterable, Mapping

import pandas as pd

from p4cf_kit import analysis as an


def record_dict(record: Any) -> dict[str, Any]:
    """A MigrationRecord (dataclass, object with to_dict/as_dict, or mapping) as a plain dict."""
    for method in ("as_row", "to_dict", "as_dict"):
        fn = getattr(record, method, None)
        if callable(fn):
            return dict(fn())
    if is_dataclass(record) and not isinstance(record, type):
        return asdict(record)
    if isinstance(record, Mapping):
        return dict(record)
    raise TypeError(f"cannot read a migration record from {type(record).__name__}")


def phase_table(records: Iterable[Any]) -> pd.DataFrame:
    """Migration records as the analysis phase table (numbered 1.. in order when unnumbered)."""
    rows = []
    for k, record in enumerate(records, start=1):
        row = record_dict(record)
        row.setdefault("migration", k)
        rows.append(row)
    return an.phases_frame(rows) if rows else pd.DataFrame()
