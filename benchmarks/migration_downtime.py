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
Beside the moved backend's gap: what the migration costs the connections it does not move,
as extra reply time (their longest reply time during the migration minus their normal one;
analysis/bystanders.py says why not the gap between replies).
Goal: median client gap <= 300 ms, p95 <= 400 ms, 0 drops in 20 migrations; untouched
connections p95 <= 5 ms above their normal reply time.

With --machines 2 the same run adds, per --link-gbit rate and --transfer way, a lab of five
hosts whose h5 lives on an emulated second machine (`p4cf machine emulate`, link rate-limited
with tbf) and h4 is a spare here. The backend follows the route h2 -> h4 -> h5 -> h4 -> h2 ...
(ExperimentOptions.route), so same-machine migrations (h2 <-> h4) and cross-machine ones
(h4 -> h5, h5 -> h4, both directions equally) alternate under the same traffic, in the same
lab and the same minutes: 2 x --migrations in all, --migrations of each kind. The baseline
of every ratio below is the same-machine kind of that lab, not the standalone run above (on a
busy machine the same-machine median moves between runs by as much as the 1 Gbit/s wire time).
Printed per case:
  same / cross median, p95    client gap of each kind (the records' machines tell them apart)
  gap / same-machine gap      (goal at 10 Gbit/s: <= 1.3)
  transfer                    the transfer phase's median: the part of the images' crossing
                              inside the downtime, after the dump ended (over a direct stream
                              the images leave as CRIU finishes each file, so most of them
                              cross during the dump: `early`, the median share of the bytes)
  transfer MB/s / link rate   (goal: >= 0.70; per migration the images' bytes, the sizes of
                              their files, over the time the stream moved them: the receiving
                              end's busy time, each file from its header to its last byte,
                              not the waits for CRIU's next file; the median)
  extra gap / wire time       (goal at 1 Gbit/s: within 20 %, i.e. <= 1.2; cross median gap
                              minus same median gap, over the median images' bytes at the link
                              rate, headers of TCP/IP and tar not counted: a strict measure)
  two-machine bring-up        (goal: <= 15 s)
  moving / bare stream        the images' moving time (bytes over that rate) over a bare TCP
                              stream of as many bytes
                              over the same link in the same run, once the lab is down
                              (image_transfer.bare_stream): what this machine's CPUs and the
                              link allow any stream at best
and both kinds' phase medians side by side (prepare, checkpoint, rewrite, transfer, restore,
switch, cleanup, total; cross also per direction), with cross - same: the goal's "nothing else
grows" is read there.

    .venv/bin/python benchmarks/migration_downtime.py [--migrations 20] [--lab NAME] [--json]
                                                      [--target embedded|bmv2|embedded,bmv2]
    .venv/bin/python benchmarks/migration_downtime.py --machines 2 --link-gbit 1,10

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

from p4cf_kit import analysis as an  # noqa: E402
from p4cf_kit.analysis.bystanders import bystander_delays  # noqa: E402
from p4cf_kit.config import parse_config  # noqa: E402
from p4cf_kit.lab import Lab  # noqa: E402
from p4cf_kit.migration.experiment import ExperimentOptions, run_experiment  # noqa: E402
from p4cf_kit.migration.phases import checkpoint_in_place, restore_in_place  # noqa: E402
from p4cf_kit.results import CLIENT_LOG  # noqa: E402

GOAL_MEDIAN_MS, GOAL_P95_MS = 300.0, 400.0
GOAL_BYSTANDER_P95_MS = 5.0
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


MACHINE = "bm"
ROUTE = ("h2", "h4", "h5", "h4")   # home -> local spare -> remote -> local spare -> home: same, cross, cross, same
PHASE_KEYS = ("prepare", "checkpoint", "rewrite", "transfer", "restore", "switch", "cleanup", "total")


def kind_of(record: Any) -> str:
    """'same', 'out' (to the emulated machine) or 'back' (from it), from the record's machines."""
    src, _, dst = record.machines.partition("->")
    if not record.machines or src == dst:
        return "same"
    return "out" if dst == MACHINE else "back"


def kind_stats(records: list[Any], downtimes: Any) -> dict[str, Any]:
    """Client gap (over the migrated connections that survived), drops and phase medians (ms) of
    one kind of migration of an interleaved run."""
    ok = [r for r in records if r.ok]
    numbers = {r.migration for r in records}
    moved = downtimes[downtimes["migration"].isin(numbers) & downtimes["migrated"].astype(bool)]
    gap = an.describe(moved.loc[moved["survived"].astype(bool), "downtime_ms"])
    phases = {p: median([(r.total_s if p == "total" else getattr(r.timings, p)) for r in ok]) * 1000
              for p in PHASE_KEYS}
    return {"migrations": len(records), "succeeded": len(ok),
            "broken": int((~moved["survived"].astype(bool)).sum()),
            "gap_ms": {"median": gap["median"], "p95": gap["p95"], "n": gap["n"]}, "phase_median_ms": phases}


def across_machines(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per link rate and transfer way, one lab with h4 a spare here and h5 on an emulated machine;
    the backend follows ROUTE, so same-machine and cross-machine migrations alternate under the same
    traffic: 2 x --migrations in all, --migrations of each kind."""
    import pandas as pd

    from p4cf_kit.config import MachineConfig
    from p4cf_kit.machines import emulated
    from p4cf_kit.machines.images import push_images
    from p4cf_kit.machines.registry import open_machine
    from p4cf_kit.migration.experiment import DOWNTIME_CSV
    rows = []
    cases = [(float(r), t) for r in args.link_gbit.split(",") for t in args.transfer.split(",")]
    for rate, transfer in cases:
        emulated.emulate(MACHINE, link_gbit=rate)
        push_images(open_machine(MachineConfig(MACHINE, emulated=True)))
        octet = OCTET + 1
        lab = Lab(parse_config({"lab": {"name": "benchx", "hosts": 5, "vip": f"10.{octet}.0.100",
                                        "subnet_pattern": f"10.{octet}.{{n}}.0/24"},
                                "machines": {MACHINE: {"emulated": True, "transfer": transfer}},
                                "hosts": {"h5": {"machine": MACHINE}}}))
        t0 = time.monotonic()
        lab.up()
        up_s = time.monotonic() - t0
        try:
            opts = ExperimentOptions(migrations=2 * args.migrations, interval_s=args.interval,
                                     connections=args.connections, rto_min_ms=args.rto_min or None,
                                     route=ROUTE, what=f"migration-downtime-{rate:g}gbit-{transfer}")
            result = run_experiment(lab, opts, out=args.out, progress=lambda line: print(line, file=sys.stderr))
        finally:
            lab.down()
        downtimes = pd.read_csv(Path(result.folder) / "raw" / DOWNTIME_CSV)
        kinds = {k: [r for r in result.records if kind_of(r) in k.split("+")] for k in ("same", "out+back")}
        same = kind_stats(kinds["same"], downtimes)
        cross = kind_stats(kinds["out+back"], downtimes)
        directions = {k: kind_stats([r for r in result.records if kind_of(r) == k], downtimes)
                      for k in ("out", "back")}
        ok = [r for r in kinds["out+back"] if r.ok]
        mb = median([r.transfer_bytes / 1e6 for r in ok])
        mb_s = median([r.transfer_mb_s for r in ok])
        early = median([r.transfer_early_bytes / r.transfer_bytes for r in ok if r.transfer_bytes])
        link_mb_s = rate * 1000 / 8
        wire_ms = mb / link_mb_s * 1000
        bare_ms = bare_stream_s(MACHINE, int(mb * 1e6)) * 1000
        same_ms, cross_ms = same["gap_ms"]["median"], cross["gap_ms"]["median"]
        rows.append({"link_gbit": rate, "transfer": transfer, "folder": str(result.folder), "up_s": up_s,
                     "route": "->".join(ROUTE), "same_machine": same, "cross_machine": cross,
                     "cross_directions": directions,
                     "broken": same["broken"] + cross["broken"], "client_errors": result.summary["client_errors"],
                     "transfer_ms": cross["phase_median_ms"]["transfer"], "transfer_mb": mb, "transfer_mb_s": mb_s,
                     "early_share": early, "moving_ms": mb / mb_s * 1000, "wire_ms": wire_ms, "bare_ms": bare_ms,
                     "ratio": {"gap_over_same_machine": cross_ms / same_ms,
                               "transfer_over_link": mb_s / link_mb_s,
                               "moving_over_bare": mb / mb_s * 1000 / bare_ms,
                               "extra_gap_over_wire_time": (cross_ms - same_ms) / wire_ms}})
    emulated.remove(MACHINE)
    return rows


def bare_stream_s(machine: str, nbytes: int, repeats: int = 5) -> float:
    """Median seconds of a bare TCP stream of `nbytes` from here into emulated `machine`."""
    from image_transfer import bare_stream
    from p4cf_kit.config import MachineConfig
    from p4cf_kit.machines.registry import open_machine
    from p4cf_kit.machines.remote import RemoteMachine
    m = open_machine(MachineConfig(machine, emulated=True))
    assert isinstance(m, RemoteMachine)
    try:
        return statistics.median(bare_stream(m, nbytes) for _ in range(repeats))
    finally:
        m.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--migrations", type=int, default=20,
                        help="per case; with --machines 2 also of each kind (same, cross) in each interleaved lab")
    parser.add_argument("--interval", type=float, default=2.5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--floor-repeats", type=int, default=5)
    parser.add_argument("--rto-min", type=int, default=5, help="ms; 0 keeps the kernel default")
    parser.add_argument("--lab", help="use this running lab instead of bringing up `bench`")
    parser.add_argument("--target", default="embedded", metavar="T[,T]",
                        help="switch target(s) of the lab this benchmark brings up: embedded, bmv2, or "
                             "embedded,bmv2 (both, one after the other in this run, side by side)")
    parser.add_argument("--out", default=str(REPO / "results"), help="parent of the results folder")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--machines", type=int, choices=(1, 2), default=1,
                        help="2: also migrate across an emulated second machine, per --link-gbit")
    parser.add_argument("--link-gbit", default="1,10", metavar="R[,R...]",
                        help="link rates between the machines for --machines 2 (Gbit/s, tbf)")
    parser.add_argument("--transfer", default="ssh,tcp", metavar="WAY[,WAY...]",
                        help="ways to move the images for --machines 2: ssh (encrypted), tcp (direct)")
    args = parser.parse_args(argv)
    targets = args.target.split(",")
    for target in targets:
        if target not in ("embedded", "bmv2"):
            parser.error(f"--target {target!r}: use embedded, bmv2 or both (embedded,bmv2)")
    if args.lab and len(targets) > 1:
        parser.error("--lab uses one running lab: give one --target")
    outs = [run_case(args, target) for target in targets]
    if args.json:
        print(json.dumps(outs[0] if len(outs) == 1 else outs, indent=2))
        return 0
    for out in outs:
        report(args, out)
        print()
    if len(outs) > 1:
        print("targets side by side (same run):")
        print(f"{'target':>9} {'ok':>6} {'broken':>6} {'gap med':>8} {'gap p95':>8} {'switch':>7} {'checkpoint':>10}")
        for out in outs:
            ph = out["phase_median_s"]
            print(f"{out['target']:>9} {out['succeeded']:>3}/{out['migrations']:<2} {out['connections_broken']:>6} "
                  f"{out['gap_ms']['median']:>6.0f}ms {out['gap_ms']['p95']:>6.0f}ms "
                  f"{ph['switch_s'] * 1000:>5.1f}ms {ph['checkpoint_s'] * 1000:>8.0f}ms")
    return 0


def run_case(args: argparse.Namespace, target: str) -> dict[str, Any]:
    """One lab on `target`: the experiment, the floor, the figures' numbers (and, with
    --machines 2, the cross-machine cases)."""
    if args.lab:
        lab, own = Lab.attach(args.lab), False
    else:
        lab = Lab(parse_config({"lab": {"name": "bench", "hosts": 4, "vip": f"10.{OCTET}.0.100",
                                        "subnet_pattern": f"10.{OCTET}.{{n}}.0/24"},
                                "switch": {"target": target}}))
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
    log = an.load_client_log(Path(result.folder) / "raw" / CLIENT_LOG)
    others = bystander_delays(log, an.phases_frame([r.as_row() for r in result.records]))
    extra = an.describe(others["extra_ms"])
    normal = an.describe(others["normal_rtt_ms"])
    out: dict[str, Any] = {
        "target": lab.config.switch.target, "folder": str(result.folder), "migrations": s["migrations"],
        "succeeded": s["succeeded"],
        "connections_migrated": s["connections_migrated"], "connections_broken": s["connections_broken"],
        "client_errors": s["client_errors"],
        "gap_ms": {"median": gap["median"], "p95": gap["p95"], "max": gap["max"]},
        "untouched_extra_ms": {"median": extra["median"], "p95": extra["p95"], "max": extra["max"],
                               "n": extra["n"], "normal_rtt_median_ms": normal["median"]},
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
        "untouched_goal_met": bool(extra["n"] and extra["p95"] <= GOAL_BYSTANDER_P95_MS),
    }
    if args.machines == 2:
        out["across_machines"] = across_machines(args)
    return out


def report(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """The text form of one case."""
    ph = out["phase_median_s"]
    fl = out["floor"]
    gap = out["gap_ms"]
    print(f"results: {out['folder']} (switch target {out['target']})")
    print(f"migrations: {out['succeeded']}/{out['migrations']} ok; {out['connections_migrated']} migrated "
          f"connections, {out['connections_broken']} broken, {out['client_errors']} client errors")
    print(f"client gap: median {gap['median']:.0f} ms, p95 {gap['p95']:.0f} ms, max {gap['max']:.0f} ms "
          f"(goal <= {GOAL_MEDIAN_MS:.0f} / {GOAL_P95_MS:.0f} ms: {'met' if out['goal_met'] else 'NOT met'})")
    ux = out["untouched_extra_ms"]
    print(f"untouched connections ({ux['n']} connection-migrations): extra reply time median "
          f"{ux['median']:.1f} ms, p95 {ux['p95']:.1f} ms, max {ux['max']:.1f} ms over their normal "
          f"{ux['normal_rtt_median_ms']:.2f} ms (goal p95 <= {GOAL_BYSTANDER_P95_MS:.0f} ms: "
          f"{'met' if out['untouched_goal_met'] else 'NOT met'})")
    print("phase medians: " + ", ".join(f"{k[:-2]} {v * 1000:.0f} ms" for k, v in ph.items() if v == v)
          + f"; checkpoint {out['checkpoint_mb_median']:.1f} MB")
    print(f"floor (bare in-place checkpoint + restore, {args.floor_repeats}x): "
          f"{fl['bare_checkpoint_restore_s'] * 1000:.0f} ms "
          f"(checkpoint {fl['bare_checkpoint_s'] * 1000:.0f}, restore {fl['bare_restore_s'] * 1000:.0f}); "
          f"CRIU's own share: {fl['criu_in_bare_s'] * 1000:.0f} ms bare, "
          f"{fl['criu_in_migrations_s'] * 1000:.0f} ms in migrations")
    r = out["ratio"]
    print(f"ratios: total/floor {r['total_over_floor']:.2f}, gap/floor {r['gap_over_floor']:.2f}, "
          f"total/CRIU {r['total_over_criu']:.2f}")
    if args.machines == 2:
        report_across(out["across_machines"])


def report_across(rows: list[dict[str, Any]]) -> None:
    """The cross-machine cases: each beside the same-machine migrations interleaved with it in its lab,
    then both kinds' phase medians side by side (which phase grows besides transfer)."""
    if not rows:
        return
    print(f"\nacross machines, interleaved ({rows[0]['route']}: h4 a spare here, h5 on the emulated machine; "
          "same = h2<->h4, cross = h4<->h5, same lab, same traffic):")
    print(f"{'link':>9} {'via':>4} {'ok':>7} {'broken':>6} {'same med':>8} {'p95':>6} {'cross med':>9} {'p95':>6} "
          f"{'/same':>6} {'images':>7} {'transfer':>8} {'early':>6} {'MB/s':>7} {'/link':>6} {'wire':>6} "
          f"{'extra/wire':>10} {'up':>6} {'moving':>7} {'bare':>7} {'/bare':>6}")
    for row in rows:
        rr, sm, cr = row["ratio"], row["same_machine"], row["cross_machine"]
        ok = sm["succeeded"] + cr["succeeded"]
        n = sm["migrations"] + cr["migrations"]
        print(f"{row['link_gbit']:>5g}Gb/s {row['transfer']:>4} {ok:>3}/{n:<3} {row['broken']:>6} "
              f"{sm['gap_ms']['median']:>6.0f}ms {sm['gap_ms']['p95']:>4.0f}ms "
              f"{cr['gap_ms']['median']:>7.0f}ms {cr['gap_ms']['p95']:>4.0f}ms {rr['gap_over_same_machine']:>6.2f} "
              f"{row['transfer_mb']:>4.1f} MB {row['transfer_ms']:>6.0f}ms {row['early_share']:>6.0%} "
              f"{row['transfer_mb_s']:>7.1f} {rr['transfer_over_link']:>6.2f} {row['wire_ms']:>4.0f}ms "
              f"{rr['extra_gap_over_wire_time']:>10.2f} {row['up_s']:>5.1f}s {row['moving_ms']:>5.1f}ms "
              f"{row['bare_ms']:>5.1f}ms {rr['moving_over_bare']:>6.2f}")
    print("\nphase medians (ms) of both kinds, same lab and minutes; cross-same: what grows besides transfer")
    print(f"{'link':>9} {'via':>4} {'kind':>10} " + " ".join(f"{p:>10}" for p in PHASE_KEYS) + f" {'gap':>7}")
    for row in rows:
        kinds = [("same", row["same_machine"]), ("cross", row["cross_machine"]),
                 ("cross out", row["cross_directions"]["out"]), ("cross back", row["cross_directions"]["back"])]
        for name, k in kinds:
            print(f"{row['link_gbit']:>5g}Gb/s {row['transfer']:>4} {name:>10} "
                  + " ".join(f"{k['phase_median_ms'][p]:>10.0f}" for p in PHASE_KEYS)
                  + f" {k['gap_ms']['median']:>7.0f}")
        sm, cr = row["same_machine"], row["cross_machine"]
        print(f"{row['link_gbit']:>5g}Gb/s {row['transfer']:>4} {'cross-same':>10} "
              + " ".join(f"{_delta(cr['phase_median_ms'][p], sm['phase_median_ms'][p]):>10}" for p in PHASE_KEYS)
              + f" {cr['gap_ms']['median'] - sm['gap_ms']['median']:>+7.0f}")


def _delta(cross: float, same: float) -> str:
    """cross - same in ms; a phase only one kind has counts as 0 in the other."""
    if cross != cross and same != same:
        return "-"
    return f"{(cross if cross == cross else 0.0) - (same if same == same else 0.0):+.0f}"

if __name__ == "__main__":
    raise SystemExit(main())
