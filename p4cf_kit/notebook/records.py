"""Migration records as analysis rows.

Why: the panel and the notebooks hold `lab.migrate(...)`'s MigrationRecords, or the rows
already made of them, and need the flat dict the analysis room reads
(analysis.PHASE_RECORD_FIELDS).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from p4cf_kit import analysis as an
from p4cf_kit.migration.record import MigrationRecord

Record = MigrationRecord | Mapping[str, Any]


def record_dict(record: Record) -> dict[str, Any]:
    """A MigrationRecord's analysis row (`as_row()`), or a copy of a row already made."""
    return record.as_row() if isinstance(record, MigrationRecord) else dict(record)


def phase_table(records: Iterable[Record]) -> pd.DataFrame:
    """Migration records as the analysis phase table (numbered 1.. in order when unnumbered)."""
    rows = []
    for k, record in enumerate(records, start=1):
        row = record_dict(record)
        row.setdefault("migration", k)
        rows.append(row)
    return an.phases_frame(rows) if rows else pd.DataFrame()
