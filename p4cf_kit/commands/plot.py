"""`p4cf plot RESULTS_DIR`: draw a run's figures again from its data alone.

By default every figure is redrawn from the CSVs beside it in figures/ (what the
figure showed, exactly). `--from-raw` recomputes them from raw/ (client log,
switch counters, migration records), e.g. after the analysis changed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from p4cf_kit.errors import KitError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("plot", help="regenerate the figures of a results folder from its data",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results_dir", type=Path, metavar="RESULTS_DIR",
                        help="a results folder (results/<timestamp>-<what>/)")
    parser.add_argument("--from-raw", action="store_true",
                        help="recompute every figure from raw/ instead of redrawing from figures/*.csv")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from p4cf_kit import results  # imported here so `p4cf --help` stays fast
    from p4cf_kit.plots import catalog, report

    try:
        folder = results.ResultsFolder.open(args.results_dir)
    except FileNotFoundError as exc:
        raise KitError(f"{exc}; pass a folder made by an experiment (it has raw/ and figures/)") from exc
    if args.from_raw:
        if not folder.raw(results.CLIENT_LOG).exists():
            raise KitError(f"{folder.raw(results.CLIENT_LOG)} is missing: --from-raw needs the client log")
        written = report.figures_from_raw(folder)
    else:
        written = catalog.regenerate(folder.figures_dir)
        if not written:
            raise KitError(f"no figure data (*.csv) in {folder.figures_dir}; try `p4cf plot --from-raw {folder.path}`")
    for files in written:
        print(f"{files.name}: {', '.join(p.name for p in files.images)}")
    print(f"{len(written)} figures in {folder.figures_dir}")
    return 0
