"""Notebook 04's series of migrations, run by the migration room's experiment runner.

Why a wrapper: the runner reports each migration through a callback; here that drives a
progress bar, and the result comes back as the results folder the figures live in.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from p4cf_kit import results

if TYPE_CHECKING:
    from p4cf_kit.lab import Lab


def run_experiment(lab: Lab, n: int, **options: Any) -> results.ResultsFolder:
    """N migrations under traffic with the migration room's runner (p4cf_kit.migration.experiment),
    with a progress bar; returns its results folder (raw data and every figure)."""
    from tqdm import tqdm  # text bar: a saved notebook shows its last state (a widget bar would show 0 %)

    from p4cf_kit.migration.experiment import ExperimentOptions
    from p4cf_kit.migration.experiment import run_experiment as run
    with tqdm(total=n, desc="migrations", unit="migration", file=sys.stdout) as bar:
        def progress(line: str) -> None:
            bar.update(1)
            bar.write(line)
        result = run(lab, ExperimentOptions(migrations=n, what=f"experiment {n} migrations", **options),
                     progress=progress)
    return results.ResultsFolder.open(result.folder)
