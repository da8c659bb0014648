"""Migration cost as the backend's memory grows, per migration mode.

For each resident size (--sizes, MiB per backend: backend.memory_mib) the benchmark brings up
its own lab (`scale`, subnets 10.172.N.0/24) whose backends hold that memory: with
--workload echo (the default) the echo server's ballast (workload/ballast.py), with --workload
redis that many MiB of data loaded into redis (apps/bulk.py; after each migration every key is
read back from the backend that moved, and so are the client's own keys). It starts traffic
from h1, and moves h2's backend h2 <-> h4 --migrations times per mode,
the modes interleaved (stop-and-copy, lazy, stop-and-copy, ...) so both see the same lab and
load. Per migration it records the client gap of every migrated connection, CRIU's frozen
time (stop-and-copy only: a lazy dump keeps its tasks frozen until the last page is served,
and CRIU reports no meaningful figure for it), the kit's checkpoint phase for both modes
(checkpoint command started -> images written: the part of the downtime the memory moves
in), CRIU's restore time, the bytes the checkpoint wrote, how long the last page took to
arrive after the switch (lazy), and the connections broken.

Baseline in the same run: stop-and-copy at the same size. Printed per size and mode: client
gap median/p95, frozen, restore, MB written, broken, and the ratios lazy/stop-and-copy; then
the issue's goals:
  at the largest size, lazy's median gap <= 2x its own gap at the smallest size and
  <= 0.5x stop-and-copy's gap at the largest size; at the smallest size lazy within 10 %
  of stop-and-copy.

Writes a results folder (under --out, default results/) with raw/scaling.csv (one row per
migration), raw/gaps.csv (one row per migrated connection), raw/migrations.csv (the records),
raw/summary.csv (one row per size and mode) and figures/gap_vs_size.png (client
gap against resident size, log-log, median with p95 whiskers; checkpoint phase dashed).

    .venv/bin/python benchmarks/migration_scaling.py [--sizes 16,64,256,1024] [--migrations 4]
                                                     [--modes stop-and-copy,lazy] [--workload redis] [--json]
                                                     [--machines 2 [--link-gbit 10]]

With --machines 2, h4 lives on an emulated second machine (`p4cf machine emulate`, its link
rate-limited to --link-gbit with tbf), so every migration crosses machines: stop-and-copy
streams the images, lazy has the destination's daemon fetch the pages from the source machine
(migration/lazy_across.py). Baseline: stop-and-copy across the same machines at the same size.

Pre-copy is not in the default modes: it needs soft-dirty page tracking (`p4cf doctor`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from p4cf_kit import analysis as an  # noqa: E402
from p4cf_kit.config import parse_config  # noqa: E402
from p4cf_kit.errors import MigrationError  # noqa: E402
from p4cf_kit.lab import Lab  # noqa: E402
from p4cf_kit.migration import modes  # noqa: E402
from p4cf_kit.migration.experiment import check_bulk, tune_routes  # noqa: E402
from p4cf_kit.migration.record import MigrationRecord  # noqa: E402
from p4cf_kit.podman.images import build_all  # noqa: E402
from p4cf_kit.results import ResultsFolder  # noqa: E402

OCTET = 172
MACHINE = "bs"          # the emulated second machine of --machines 2
CONNECTIONS = 8
RATE = 50.0
SETTLE_S = 2.0          # traffic between migrations, so each gap is measured from steady state


WORKLOADS = ("echo", "redis")


def run_size(mib: int, mode_list: list[str], migrations: int, folder: ResultsFolder,
             workload: str = "echo", machine: str | None = None,
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """One lab with `mib` MiB per backend (h4 on emulated machine `machine` if given);
    `migrations` per mode, interleaved. Returns rows per migration, per migrated connection
    (its gap) and the migrations' own records."""
    across: dict[str, Any] = ({"machines": {machine: {"emulated": True}}, "hosts": {"h4": {"machine": machine}}}
                              if machine else {})
    lab = Lab(parse_config({"lab": {"name": "scale", "hosts": 4, "vip": f"10.{OCTET}.0.100",
                                    "subnet_pattern": f"10.{OCTET}.{{n}}.0/24"},
                            "workload": {"kind": workload}, "backend": {"memory_mib": mib}, **across}))
    t0 = time.monotonic()
    lab.up()
    print(f"{mib} MiB: lab up in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    gaps: list[dict[str, Any]] = []
    try:
        tune_routes(lab, 5)
        run = lab.traffic(connections=CONNECTIONS, rate=RATE, log_dir=folder.raw_dir / f"traffic-{mib}")
        records: list[MigrationRecord] = []
        try:
            run.wait_rows(5 * CONNECTIONS)
            time.sleep(SETTLE_S)
            k = 0
            for _ in range(migrations):
                for mode in mode_list:
                    k += 1
                    src, dst = ("h2", "h4") if "h2" in lab.pool() else ("h4", "h2")
                    try:
                        rec = lab.migrate(src, dst, mode=mode, migration=k)
                    except MigrationError as exc:
                        if exc.record is None:
                            raise
                        rec = exc.record
                    if rec.ok and lab.config.workload.verifies_data:   # redis: every key still there?
                        check_bulk(lab, rec)
                        rec.set_data_check(run.verify(k))
                    records.append(rec)
                    data = "" if rec.data_ok is None else f" data {'ok' if rec.data_ok else 'LOST'}"
                    print(f"  {mib} MiB {mode:>13} m{k}: ok={rec.ok} total {rec.total_s:.3f} s "
                          f"checkpoint {rec.timings.checkpoint or 0:.3f} restore {rec.criu_restore_s or 0:.3f} "
                          f"{rec.checkpoint_bytes / 1e6:.0f} MB{data}" + (f" {rec.error}" if not rec.ok else ""),
                          file=sys.stderr)
                    time.sleep(SETTLE_S)
        finally:
            run.stop()
        log = an.load_client_log(run.csv_path)
        for rec in records:
            per_conn = an.downtime_for_record(log, rec.as_row())
            moved = per_conn[per_conn["migrated"]]
            kept = moved[moved["survived"]]["downtime_ms"]
            gaps += [{"size_mib": mib, "mode": rec.mode, "migration": rec.migration, "ok": rec.ok,
                      "conn_id": c.conn_id, "survived": bool(c.survived), "gap_ms": float(c.downtime_ms)}
                     for c in moved.itertuples()]
            rows.append({"size_mib": mib, "mode": rec.mode, "migration": rec.migration, "ok": rec.ok,
                         "gap_median_ms": float(kept.median()) if len(kept) else float("nan"),
                         "gap_p95_ms": float(kept.quantile(0.95)) if len(kept) else float("nan"),
                         "connections": len(moved), "broken": int(len(moved) - len(kept)),
                         "frozen_s": rec.criu_dump_s, "checkpoint_s": rec.timings.checkpoint,
                         "restore_s": rec.criu_restore_s,
                         "restore_phase_s": rec.timings.restore, "total_s": rec.total_s,
                         "bytes_written": rec.checkpoint_bytes, "pages_done_s": rec.pages_done_s,
                         "data_ok": rec.data_ok, "bulk_keys": rec.bulk_keys})
        errors = an.error_events(log)
        if len(errors):
            print(f"  {mib} MiB: {len(errors)} client error events", file=sys.stderr)
    finally:
        lab.down()
    return rows, gaps, [{"size_mib": mib, **r.as_row()} for r in records]


def summarize(rows: pd.DataFrame, gaps: pd.DataFrame) -> pd.DataFrame:
    """One row per size and mode: client gap median and p95 over every migrated connection of its
    successful migrations (as migration_downtime.py), the other figures as medians over migrations."""
    out = []
    for (mib, mode), grp in rows.groupby(["size_mib", "mode"], sort=True):
        ok = grp[grp["ok"]]
        kept = gaps[(gaps["size_mib"] == mib) & (gaps["mode"] == mode) & gaps["ok"] & gaps["survived"]]["gap_ms"]
        out.append({"size_mib": mib, "mode": mode, "migrations": len(grp), "ok": len(ok),
                    "gap_median_ms": kept.median(), "gap_p95_ms": kept.quantile(0.95),
                    "frozen_s": ok["frozen_s"].median(), "checkpoint_s": ok["checkpoint_s"].median(),
                    "restore_s": ok["restore_s"].median(),
                    "total_s": ok["total_s"].median(), "mb_written": ok["bytes_written"].median() / 1e6,
                    "pages_done_s": ok["pages_done_s"].median() if ok["pages_done_s"].notna().any() else float("nan"),
                    "broken": int(grp["broken"].sum()),
                    "data_lost": int((grp["data_ok"] == False).sum())})  # noqa: E712  (None: not checked)
    return pd.DataFrame(out)


def figure(summary: pd.DataFrame, path: Path, note: str = "", workload: str = "echo") -> None:
    """Client gap against resident size, log-log, one line per mode; checkpoint phase dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    fig, ax = plt.subplots(figsize=(7, 4.5))
    gaps, phases = [], []
    for k, (mode, grp) in enumerate(summary.groupby("mode")):
        grp = grp.sort_values("size_mib")
        dodge = 1.04 ** k      # side by side, so one mode's whisker does not hide behind the other's point
        line = ax.errorbar(grp["size_mib"] * dodge, grp["gap_median_ms"],
                           yerr=[[0] * len(grp), (grp["gap_p95_ms"] - grp["gap_median_ms"]).clip(lower=0)],
                           marker="o", capsize=3, label=f"{mode}: client gap (median; whisker: p95)")
        gaps.append(line)
        phases += ax.plot(grp["size_mib"], grp["checkpoint_s"] * 1000, linestyle="--", color=line[0].get_color(),
                          alpha=0.6, label=f"{mode}: checkpoint phase (until the images are written)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    sizes = sorted(summary["size_mib"].unique())
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.xaxis.set_minor_locator(NullLocator())
    ticks = [t for t in (50, 100, 200, 300, 500, 1000, 2000, 3000, 5000, 10000, 20000)
             if 0.7 * ax.get_ylim()[0] <= t <= 1.4 * ax.get_ylim()[1]]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.set_yticks(ticks, [str(t) for t in ticks])
    ax.yaxis.set_minor_formatter(NullFormatter())
    what = "redis data" if workload == "redis" else "resident ballast"
    ax.set_xlabel(f"{what} per backend (MiB, log scale)")
    ax.set_ylabel("milliseconds (log scale)")
    memory = "redis data" if workload == "redis" else "backend memory"
    ax.set_title(f"Migration downtime against {memory}, per mode" + (f"\n{note}" if note else ""),
                 fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(handles=[*gaps, *phases], fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def goals(summary: pd.DataFrame) -> list[tuple[str, float, float, bool]]:
    """(goal, measured ratio, limit, met) for the issue's three goals, where both modes ran."""
    gap = {(int(r.size_mib), str(r.mode)): float(r.gap_median_ms) for r in summary.itertuples()}
    sizes = sorted({s for s, _ in gap})
    small, big = sizes[0], sizes[-1]
    out = []
    if big != small and (big, "lazy") in gap and (small, "lazy") in gap:
        ratio = gap[(big, "lazy")] / gap[(small, "lazy")]
        out.append((f"lazy gap {big} MiB / lazy gap {small} MiB", ratio, 2.0, ratio <= 2.0))
    if big != small and (big, "lazy") in gap and (big, "stop-and-copy") in gap:
        ratio = gap[(big, "lazy")] / gap[(big, "stop-and-copy")]
        out.append((f"lazy gap / stop-and-copy gap at {big} MiB", ratio, 0.5, ratio <= 0.5))
    if (small, "lazy") in gap and (small, "stop-and-copy") in gap:
        ratio = gap[(small, "lazy")] / gap[(small, "stop-and-copy")]
        out.append((f"lazy gap / stop-and-copy gap at {small} MiB", ratio, 1.1, ratio <= 1.1))
    return out


def emulate_machine(link_gbit: float) -> None:
    """The emulated second machine of --machines 2, with this checkout's images pushed."""
    from p4cf_kit.config import MachineConfig
    from p4cf_kit.machines import emulated
    from p4cf_kit.machines.images import push_images
    from p4cf_kit.machines.registry import open_machine
    emulated.remove(MACHINE)
    emulated.emulate(MACHINE, link_gbit=link_gbit)
    machine = open_machine(MachineConfig(MACHINE, emulated=True))
    try:
        push_images(machine)
    finally:
        machine.close()


def run_sizes(sizes: list[int], mode_list: list[str], args: argparse.Namespace, folder: ResultsFolder,
              machine: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Every size in turn; the CSVs are rewritten after each, so they are kept if a later size fails."""
    rows: list[dict[str, Any]] = []
    gaps: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for mib in sizes:
        size_rows, size_gaps, size_records = run_size(mib, mode_list, args.migrations, folder, args.workload,
                                                      machine)
        rows, gaps, records = rows + size_rows, gaps + size_gaps, records + size_records
        pd.DataFrame(rows).to_csv(folder.raw("scaling.csv"), index=False)
        pd.DataFrame(gaps).to_csv(folder.raw("gaps.csv"), index=False)
        pd.DataFrame(records).to_csv(folder.raw("migrations.csv"), index=False)
    return rows, gaps, records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="16,64,256,1024",
                        help="MiB per backend (backend.memory_mib), comma-separated")
    parser.add_argument("--workload", choices=WORKLOADS, default="echo",
                        help="echo (a ballast the server keeps dirty; default) or redis (loaded with that much "
                             "data, every key read back after each migration)")
    parser.add_argument("--modes", default="stop-and-copy,lazy", help="migration modes, comma-separated")
    parser.add_argument("--migrations", type=int, default=4, help="migrations per size and mode")
    parser.add_argument("--out", default=str(REPO / "results"), help="parent of the results folder")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--machines", type=int, choices=(1, 2), default=1,
                        help="2: h4 on an emulated second machine, so every migration crosses machines")
    parser.add_argument("--link-gbit", type=float, default=10.0,
                        help="the link rate between the machines for --machines 2 (Gbit/s, tbf)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    mode_list = args.modes.split(",")
    for mode in mode_list:
        if mode not in modes.MODES:
            parser.error(f"--modes: {mode!r} is not one of {', '.join(modes.MODES)}")
        found = modes.support(mode)
        if not found.available:
            parser.error(f"--modes: {mode} cannot run here: {found.reason}")
    two = args.machines == 2
    folder = ResultsFolder.create("migration-scaling" + ("-2machines" if two else ""), parent=args.out,
                                  config={"benchmark": {"sizes_mib": sizes, "modes": mode_list,
                                                        "workload": args.workload, "migrations": args.migrations,
                                                        "connections": CONNECTIONS, "rate": RATE,
                                                        "machines": args.machines,
                                                        "link_gbit": args.link_gbit if two else None}})
    build_all()    # this checkout's images (the server's ballast, redis, the client), unless current
    if two:
        emulate_machine(args.link_gbit)
    try:
        rows, gaps, records = run_sizes(sizes, mode_list, args, folder, MACHINE if two else None)
    finally:
        if two:
            from p4cf_kit.machines import emulated
            emulated.remove(MACHINE)
    summary = summarize(pd.DataFrame(rows), pd.DataFrame(gaps))
    summary.to_csv(folder.raw("summary.csv"), index=False)
    figure(summary, folder.figures_dir / "gap_vs_size.png",
           note=f"over the migrated connections of {args.migrations} migrations per point "
                f"({CONNECTIONS} connections at {RATE:.0f} req/s)", workload=args.workload)
    checks = goals(summary)
    folder.finish(summary=summary.to_dict("records"),
                  goals=[{"goal": g, "ratio": r, "limit": lim, "met": ok} for g, r, lim, ok in checks])
    if args.json:
        print(json.dumps({"folder": str(folder.path), "summary": summary.to_dict("records"),
                          "goals": [{"goal": g, "ratio": r, "limit": lim, "met": ok} for g, r, lim, ok in checks]},
                         indent=2, default=float))
        return 1 if int(summary["data_lost"].sum()) else 0
    print(f"results: {folder.path}")
    if two:
        print(f"every migration across machines: h2 here <-> h4 on emulated machine {MACHINE!r}, "
              f"link {args.link_gbit:g} Gbit/s")
    print(f"{'MiB':>5} {'mode':>13} {'ok':>5} {'gap med':>8} {'gap p95':>8} {'frozen':>8} {'ckpt':>8} {'restore':>8} "
          f"{'MB written':>10} {'last page':>9} {'broken':>6} {'data lost':>9}")
    for r in summary.itertuples():
        frozen = "-" if pd.isna(r.frozen_s) else f"{r.frozen_s * 1000:.0f}ms"
        last = "-" if pd.isna(r.pages_done_s) else f"{r.pages_done_s:.2f}s"
        print(f"{r.size_mib:>5} {r.mode:>13} {r.ok:>2}/{r.migrations:<2} {r.gap_median_ms:>6.0f}ms "
              f"{r.gap_p95_ms:>6.0f}ms {frozen:>8} {r.checkpoint_s * 1000:>6.0f}ms "
              f"{r.restore_s * 1000:>6.0f}ms "
              f"{r.mb_written:>10.1f} {last:>9} {r.broken:>6} {r.data_lost if args.workload == 'redis' else '-':>9}")
    baseline = {int(r.size_mib): float(r.gap_median_ms) for r in summary.itertuples() if r.mode == "stop-and-copy"}
    for r in summary.itertuples():
        if r.mode != "stop-and-copy" and int(r.size_mib) in baseline:
            print(f"{r.size_mib:>5} MiB: {r.mode} gap / stop-and-copy gap = "
                  f"{r.gap_median_ms / baseline[int(r.size_mib)]:.2f}")
    for goal, ratio, limit, met in checks:
        print(f"goal {goal} = {ratio:.2f} (limit {limit}): {'met' if met else 'NOT met'}")
    print(f"medians over {args.migrations} migrations per size and mode; "
          f"figure: {folder.figures_dir / 'gap_vs_size.png'}")
    lost = int(summary["data_lost"].sum())
    if lost:
        print(f"DATA LOST after {lost} migration(s): see raw/migrations.csv (bulk_*, data_*)", file=sys.stderr)
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
