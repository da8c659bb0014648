"""Client-visible downtime of live migration, against the floor CRIU itself sets.

Brings up its own lab (`bench`, subnets 10.158.N.0/24) unless --lab names a running one,
runs `p4cf experiment` logic (traffic from h1, --migrations back and forth h2 <-> h4,
results folder under --out), then, in the same run and under the same traffic, measures
the floor: a bare checkpoint + restore of the same backend container in place (Podman +
CRIU, --tcp-established, no export, no rewrite, no switch), --floor-repeats times.

Printed: client gap median/p95 over migrated connections, drops (broken connections,
client errors), phase medians, and the ratios
  total / floor      migration downtime (checkpoint..switch) over the bare dump + restore
  gap / floor        what the client saw over the same floor
  total / CRIU       over CRIU's own share (frozen time of the dump + restore time, from
                     Podman's --print-stats of the migrations themselves)
Goal: median client gap <= 300 ms, p95 <= 400 ms, 0 drops in 20 migrations.

    .venv/bin/python benchmarks/migration_downtime.py [--migrations 20] [--lab NAME] [--json]
                                                      [--target embedded|bmv2]

`--target bmv2` brings the lab up on BMv2 (simple_switch_grpc in the lab's switch netns): the
switch phase is then BMv2's P4Runtime MODIFY, the client gap includes BMv2's forwarding.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from p4cf_kit.config import parse_config  # noqa: E402
from p4cf_kit.lab import Lab  # noqa: E402
from p4cf_kit.migration.experiment import ExperimentOptions, run_experiment  # noqa: E402
from p4cf_kit.migration.phases import checkpoint_in_place, restore_in_place  # noqa: E402

GOAL_MEDIAN_MS, GOAL_P95_MS = 300.0, 400.0
OCTET = 158


def bare_cycle(container: str) -> dict[str, float | None]:
    """One in-place checkpoint + restore of `container` (the floor), wall and CRIU seconds."""
    t0 = time.monotonic()
    d = checkpoint_in_place(container)
    t1 = time.monotonic()
    r = restore_in_place(container)
    t2 = time.monotonic()
    return {"wall_s": t2 - t0, "checkpoint_s": t1 - t0, "restore_s": t2 - t1,
            "criu_s": (d.criu_s or 0) + (r.criu_s or 0) if d.criu_s and r.criu_s else None}


def measure_floor(lab: Lab, repeats: int, connections: int) -> list[dict[str, float | None]]:
    """Bare cycles of the moving backend's container, under the experiment's traffic."""
    host = next(h for h in ("h2", "h4") if h in lab.pool())
    run = lab.traffic(connections=connections, rate=50)
    try:
        run.wait_rows(2 * connections)
        cycles = []
        for _ in range(repeats):
            cycles.append(bare_cycle(lab.names.server(host)))
            time.sleep(1.0)
        return cycles
    finally:
        run.stop()


def median(values: list[float | None]) -> float:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--migrations", type=int, default=20)
    parser.add_argument("--interval", type=float, default=2.5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--floor-repeats", type=int, default=5)
    parser.add_argument("--rto-min", type=int, default=5, help="ms; 0 keeps the kernel default")
    parser.add_argument("--lab", help="use this running lab instead of bringing up `bench`")
    parser.add_argument("--target", choices=("embedded", "bmv2"), default="embedded",
                        help="switch target of the lab this benchmark brings up")
    parser.add_argument("--out", default=str(REPO / "results"), help="parent of the results folder")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    if args.lab:
        lab, own = Lab.attach(args.lab), False
    else:
        lab = Lab(parse_config({"lab": {"name": "bench", "hosts": 4, "vip": f"10.{OCTET}.0.100",
                                        "subnet_pattern": f"10.{OCTET}.{{n}}.0/24"},
                                "switch": {"target": args.target}}))
        lab.up()
        own = True
    try:
        opts = ExperimentOptions(migrations=args.migrations, interval_s=args.interval,
                                 connections=args.connections, rto_min_ms=args.rto_min or None,
                                 what="migration-downtime-benchmark")
        result = run_experiment(lab, opts, out=args.out, progress=lambda line: print(line, file=sys.stderr))
        floor = measure_floor(lab, args.floor_repeats, args.connections)
    finally:
        if own:
            lab.down()
        else:
            lab.close()

    ok = [r for r in result.records if r.ok]
    s = result.summary
    totals = [r.total_s for r in ok]
    criu = [r.criu_dump_s + r.criu_restore_s for r in ok if r.criu_dump_s and r.criu_restore_s]
    floor_wall = median([c["wall_s"] for c in floor])
    gap = s["gap_ms"]
    out: dict[str, Any] = {
        "folder": str(result.folder), "migrations": s["migrations"], "succeeded": s["succeeded"],
        "connections_migrated": s["connections_migrated"], "connections_broken": s["connections_broken"],
        "client_errors": s["client_errors"],
        "gap_ms": {"median": gap["median"], "p95": gap["p95"], "max": gap["max"]},
        "phase_median_s": s["phase_median_s"], "checkpoint_mb_median": s["checkpoint_mb_median"],
        "floor": {"bare_checkpoint_restore_s": floor_wall,
                  "bare_checkpoint_s": median([c["checkpoint_s"] for c in floor]),
                  "bare_restore_s": median([c["restore_s"] for c in floor]),
                  "criu_in_bare_s": median([c["criu_s"] for c in floor]),
                  "criu_in_migrations_s": median(criu)},
        "ratio": {"total_over_floor": median(totals) / floor_wall,
                  "gap_over_floor": gap["median"] / 1000 / floor_wall,
                  "total_over_criu": median(totals) / median(criu) if criu else float("nan")},
        "goal_met": bool(gap["median"] <= GOAL_MEDIAN_MS and gap["p95"] <= GOAL_P95_MS
                         and s["connections_broken"] == 0 and s["client_errors"] == 0),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    ph = out["phase_median_s"]
    fl = out["floor"]
    print(f"results: {out['folder']} (switch target {lab.config.switch.target})")
    print(f"migrations: {out['succeeded']}/{out['migrations']} ok; {out['connections_migrated']} migrated "
          f"connections, {out['connections_broken']} broken, {out['client_errors']} client errors")
    print(f"client gap: median {gap['median']:.0f} ms, p95 {gap['p95']:.0f} ms, max {gap['max']:.0f} ms "
          f"(goal <= {GOAL_MEDIAN_MS:.0f} / {GOAL_P95_MS:.0f} ms: {'met' if out['goal_met'] else 'NOT met'})")
    print("phase medians: " + ", ".join(f"{k[:-2]} {v * 1000:.0f} ms" for k, v in ph.items())
          + f"; checkpoint {out['checkpoint_mb_median']:.1f} MB")
    print(f"floor (bare in-place checkpoint + restore, {args.floor_repeats}x): {fl['bare_checkpoint_restore_s'] * 1000:.0f} ms "
          f"(checkpoint {fl['bare_checkpoint_s'] * 1000:.0f}, restore {fl['bare_restore_s'] * 1000:.0f}); "
          f"CRIU's own share: {fl['criu_in_bare_s'] * 1000:.0f} ms bare, {fl['criu_in_migrations_s'] * 1000:.0f} ms in migrations")
    r = out["ratio"]
    print(f"ratios: total/floor {r['total_over_floor']:.2f}, gap/floor {r['gap_over_floor']:.2f}, "
          f"total/CRIU {r['total_over_criu']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
