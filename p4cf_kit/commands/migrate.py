"""`p4cf migrate SRC DST`: live-migrate the backend on host SRC to host DST (e.g. h2 h4).

Checkpoint (CRIU via Podman, TCP connections kept) -> rewrite the sockets to DST's
address -> restore in DST's pod -> point the switch's slot at DST -> clean up.
A failed phase is rolled back (the backend runs at SRC again) and reported.
`--fail-at PHASE` (or P4CF_MIGRATION_FAIL_AT) makes that phase fail after its work,
to see rollback happen. `--mode` chooses how memory moves (default: the lab config's
migration.mode): stop-and-copy, lazy (pages follow after the restore), pre-copy (needs
soft-dirty tracking; `p4cf doctor` says whether this kernel has it). A redis backend
loaded with data (backend.memory_mib) has every bulk key read back afterwards; one
missing or wrong makes the exit status 1.
"""

from __future__ import annotations

import argparse

from p4cf_kit.commands._labargs import add_lab_options, emit, lab_name


def _run(args: argparse.Namespace) -> int:
    from p4cf_kit.errors import MigrationError
    from p4cf_kit.lab import Lab
    from p4cf_kit.migration import migrate
    from p4cf_kit.migration.experiment import check_bulk
    from p4cf_kit.migration.modes import require
    from p4cf_kit.migration.tuning import set_rto_min
    from p4cf_kit.topology.pods import pod_net

    if args.mode:
        require(args.mode)      # a mode this machine cannot run is refused before the lab is looked at
    lab = Lab.attach(lab_name(args))
    try:
        if args.rto_min:
            for host in lab.config.hosts:
                machine = lab.machine_of(host)
                set_rto_min(pod_net(lab.names, host, machine).netns_path, args.rto_min, machine)
        try:
            rec = migrate(lab, args.src, args.dst, fail_at=args.fail_at, mode=args.mode)
        except MigrationError as exc:
            if args.json and exc.record is not None:
                emit(args, exc.record.as_row(), "")
            raise
        check_bulk(lab, rec)
    finally:
        lab.close()
    t = rec.timings
    bulk = "" if rec.bulk_ok is None else (
        f"; bulk data: {rec.bulk_keys} keys read back, all right" if rec.bulk_ok else
        f"; BULK DATA LOST: {rec.bulk_missing} of {rec.bulk_keys} keys missing, {rec.bulk_wrong} wrong"
        if rec.bulk_keys is not None else f"; BULK DATA NOT CHECKED: {rec.error}")
    emit(args, rec.as_row(),
         f"{rec.backend} moved {rec.src} -> {rec.dst} in {rec.total_s:.3f} s "
         f"(checkpoint {t.checkpoint:.3f} of which CRIU frozen {rec.criu_dump_s or 0:.3f}, rewrite {t.rewrite:.3f}, "
         f"restore {t.restore:.3f}, switch {t.switch:.3f}; before it prepare {t.prepare:.3f}, after it "
         f"cleanup {t.cleanup:.3f}); {rec.checkpoint_bytes / 1e6:.1f} MB, "
         f"{rec.sockets_rewritten} sockets rewritten; now {rec.container}; mode {rec.mode}"
         + (f"; across machines {rec.machines} via {rec.transfer_via}: transfer {t.transfer or 0:.3f} s after "
            f"the dump, {rec.transfer_early_bytes / max(rec.transfer_bytes, 1):.0%} of the bytes left during it, "
            f"{rec.transfer_mb_s or 0:.0f} MB/s while they moved" if rec.machines else "")
         + (f", last page in {rec.pages_done_s:.3f} s after the switch" if rec.pages_done_s is not None else "")
         + (f", {rec.precopy_rounds} pre-copy rounds before it (bytes: {rec.precopy_round_bytes})"
            if rec.precopy_rounds is not None else "")
         + bulk)
    return 1 if rec.bulk_ok is False else 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from p4cf_kit.config import MIGRATION_MODES
    from p4cf_kit.migration.record import PHASES

    p = subparsers.add_parser("migrate", help="live-migrate a backend container to another host",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="host whose backend moves (e.g. h2)")
    p.add_argument("dst", help="host without a backend to move it to (e.g. h4)")
    p.add_argument("--fail-at", choices=PHASES, help="inject a failure after this phase (tests rollback)")
    p.add_argument("--mode", choices=MIGRATION_MODES, default=None,
                   help="how memory moves (default: the lab config's migration.mode, else stop-and-copy)")
    p.add_argument("--rto-min", type=int, default=0, metavar="MS",
                   help="set rto_min on every pod's gateway routes first (shorter TCP recovery)")
    add_lab_options(p)
    p.set_defaults(func=_run)
