"""`p4cf experiment --migrations N`: traffic plus N live migrations, into a results folder.

Brings the lab up when it is not (from --config), starts the client, migrates the
first backend back and forth between its home and the first idle host every
--interval seconds (or along --route, a cycle of hosts such as h2,h4,h5,h4),
and writes raw/ (client.csv, migrations.json/.csv with the phase timings,
downtime.csv per connection, migration_downtime.csv per migration,
switch_counters.csv, server logs), config.toml, versions.json (tools, packages,
kernel) and the figures (`p4cf plot DIR` redraws them). `--mode` says how every
migration of this experiment moves memory (default: the config's migration.mode);
`--memory-mib` how much each backend holds when this command brings the lab up
(redis: data loaded into it, every key read back after each migration).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from p4cf_kit.commands._labargs import add_lab_options, emit, lab_name

if TYPE_CHECKING:
    from p4cf_kit.lab import Lab


def _lab(args: argparse.Namespace) -> tuple[Lab, bool]:
    from p4cf_kit.config import load_config, with_choices
    from p4cf_kit.errors import ConfigError
    from p4cf_kit.lab import STATE_FILE, Lab
    from p4cf_kit.topology.names import LabNames

    name = lab_name(args)
    if (LabNames(name).state / STATE_FILE).exists():
        lab = Lab.attach(name)
        if args.workload and args.workload != lab.config.workload.kind:
            lab.close()
            raise ConfigError(f"lab {name!r} is up with workload {lab.config.workload.kind!r}, not "
                              f"{args.workload!r}; `p4cf down --lab {name}` first, or leave out --workload")
        if args.memory_mib is not None and args.memory_mib != lab.config.backend.memory_mib:
            lab.close()
            raise ConfigError(f"lab {name!r} is up with {lab.config.backend.memory_mib} MiB per backend, not "
                              f"{args.memory_mib}; `p4cf down --lab {name}` first, or leave out --memory-mib")
        return lab, False
    lab = Lab(with_choices(load_config(args.config), args.workload, args.memory_mib))
    lab.up()
    return lab, True


def _run(args: argparse.Namespace) -> int:
    from p4cf_kit.migration.experiment import ExperimentOptions, run_experiment

    opts = ExperimentOptions(migrations=args.migrations, interval_s=args.interval, connections=args.connections,
                             rate=args.rate, rto_min_ms=args.rto_min or None, fail_at=args.fail_at, mode=args.mode,
                             route=tuple(args.route.split(",")) if args.route is not None else None)
    lab, started = _lab(args)
    try:
        result = run_experiment(lab, opts, out=args.out,
                                progress=(lambda line: print(line, file=sys.stderr)) if not args.json else
                                (lambda _: None))
    finally:
        lab.down() if started and args.down else lab.close()
    s = result.summary
    gap = s.get("gap_ms", {})
    data = s.get("data")
    checked = (f"\ndata: {data['checks_ok']}/{data['checks']} checks ok, {data['keys_last']} keys at the last, "
               f"{data['keys_missing']} missing, {data['keys_wrong']} wrong, {data['read_mismatches']} wrong reads"
               if data else "")
    if data and "bulk_checks" in data:
        checked += (f"; bulk data: {data['bulk_checks_ok']}/{data['bulk_checks']} checks ok, {data['bulk_keys']} "
                    f"keys each, {data['bulk_missing']} missing, {data['bulk_wrong']} wrong")
    emit(args, {"folder": str(result.folder), **s},
         f"{s['succeeded']}/{s['migrations']} {s.get('mode', '')} migrations ok; "
         f"client gap median {gap.get('median', float('nan')):.0f} ms, "
         f"p95 {gap.get('p95', float('nan')):.0f} ms over {s['connections_migrated']} migrated connections, "
         f"{s['connections_broken']} broken, {s['client_errors']} client errors{checked}\nresults: {result.folder}")
    return 0 if s["succeeded"] == s["migrations"] and s["connections_broken"] == 0 else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from p4cf_kit.apps.settings import KINDS
    from p4cf_kit.config import MIGRATION_MODES
    from p4cf_kit.migration.record import PHASES
    from p4cf_kit.migration.tuning import DEFAULT_RTO_MIN_MS

    p = subparsers.add_parser("experiment", help="run N live migrations under traffic and record everything",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--migrations", "-n", type=int, required=True, help="number of migrations")
    p.add_argument("--interval", type=float, default=3.0, help="seconds between migrations (default 3)")
    p.add_argument("--out", help="parent folder of the results folder (default: results/)")
    p.add_argument("--connections", type=int, default=16, help="client connections (default 16)")
    p.add_argument("--rate", type=float, default=50.0, help="requests/s per connection (default 50)")
    p.add_argument("--rto-min", type=int, default=DEFAULT_RTO_MIN_MS, metavar="MS",
                   help=f"rto_min on the pods' routes (default {DEFAULT_RTO_MIN_MS}; 0 leaves the kernel's 200 ms)")
    p.add_argument("--route", metavar="H,H[,H...]",
                   help="hosts the backend visits in turn, as a cycle starting at the one serving it (e.g. "
                        "h2,h4,h5,h4: h2->h4->h5->h4->h2...); default: its home and the first idle host")
    p.add_argument("--fail-at", choices=PHASES, help="inject a failure after this phase in every migration")
    p.add_argument("--workload", choices=KINDS,
                   help="what the backends run when this command brings the lab up (default: the config's); "
                        "redis checks every key after each migration and fails (exit 1) on a lost or wrong one")
    p.add_argument("--mode", choices=MIGRATION_MODES, default=None,
                   help="how every migration moves memory (default: the lab config's migration.mode, "
                        "else stop-and-copy); as `p4cf migrate --mode`")
    p.add_argument("--memory-mib", type=int, metavar="MIB",
                   help="MiB each backend holds when this command brings the lab up (echo: a ballast; redis: "
                        "data loaded into it, checked after each migration), overriding backend.memory_mib")
    p.add_argument("--down", action="store_true", help="take the lab down afterwards if this command brought it up")
    add_lab_options(p, with_config=True)
    p.set_defaults(func=_run)
