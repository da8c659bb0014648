"""Redis under load through N live migrations: no key lost or wrong, no connection broken, and
what the migrations cost the requests.

Brings up its own lab (`bredis`, subnets 10.217.N.0/24, workload redis) unless --lab names a
running redis lab, and runs the experiment (`p4cf experiment --workload redis` logic): the
kit's RESP client on --connections long-lived connections, SET and GET alternating at --rate
per connection, every value read checked against what was written, and after each migration
every key read back (count, missing, wrong, digest). The results folder holds the figure
`latency` (GET and SET p50/p99 per 100 ms around each migration, PNG/SVG/PDF beside its CSV).

Printed: keys at the end, keys lost or wrong over all checks, reads that returned another
value, broken connections, the client gap, and GET/SET latency p50/p99 before, during and
after the migrations, with the ratio during / before (the baseline: the same requests on the
same connections just before each migration, measured in this run).
Goal: 20 migrations, 0 keys lost or wrong, 0 broken connections.

    .venv/bin/python benchmarks/redis_migrations.py [--migrations 20] [--connections 8] [--rate 100] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from p4cf_kit.apps.datacheck import DataLossError  # noqa: E402
from p4cf_kit.config import parse_config  # noqa: E402
from p4cf_kit.lab import Lab  # noqa: E402
from p4cf_kit.migration.experiment import (  # noqa: E402
    ExperimentOptions,
    ExperimentResult,
    run_experiment,
)
from p4cf_kit.podman.images import build_all  # noqa: E402

OCTET = 217


def _lab(args: argparse.Namespace) -> tuple[Lab, bool]:
    # This checkout's images (the redis image, the client's rr_client.py): rebuilt only when changed.
    build_all()
    if args.lab:
        lab = Lab.attach(args.lab)
        if lab.config.workload.kind != "redis":
            raise SystemExit(f"lab {args.lab!r} runs workload {lab.config.workload.kind!r}, not redis")
        return lab, False
    lab = Lab(parse_config({"lab": {"name": "bredis", "hosts": 4, "vip": f"10.{OCTET}.0.100",
                                    "subnet_pattern": f"10.{OCTET}.{{n}}.0/24"},
                            "workload": {"kind": "redis", "value_bytes": args.value_bytes}}))
    lab.up()
    return lab, True


def _ratio(during: float, before: float) -> float:
    return during / before if before and not math.isnan(before) and not math.isnan(during) else float("nan")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    lab, started = _lab(args)
    failure = ""
    try:
        opts = ExperimentOptions(migrations=args.migrations, interval_s=args.interval, connections=args.connections,
                                 rate=args.rate, what="redis-migrations")
        try:
            result = run_experiment(lab, opts, out=args.out, progress=lambda line: print(line, file=sys.stderr))
        except DataLossError as exc:  # the numbers are still written; report them, then fail
            failure = str(exc)
            result = _reopen(exc)
    finally:
        lab.down() if started else lab.close()
    s = result.summary
    latency = {op: {w: v for w, v in windows.items()} for op, windows in s.get("latency_ms", {}).items()}
    for windows in latency.values():
        for pct in ("p50_ms", "p99_ms"):
            windows[f"during_over_before_{pct[:-3]}"] = _ratio(windows["during"][pct], windows["before"][pct])
    return {"folder": str(result.folder), "migrations": s["migrations"], "succeeded": s["succeeded"],
            "connections_migrated": s["connections_migrated"], "connections_broken": s["connections_broken"],
            "client_errors": s["client_errors"], "gap_ms": s["gap_ms"], "data": s.get("data", {}),
            "latency_ms": latency, "failure": failure}


def _reopen(exc: DataLossError) -> ExperimentResult:
    from p4cf_kit import results
    from p4cf_kit.migration.experiment import summarize
    assert exc.folder is not None
    folder = exc.folder
    return ExperimentResult(folder=folder, records=[], summary=summarize(results.ResultsFolder.open(folder)))


def report(out: dict[str, Any]) -> None:
    data = out["data"]
    print(f"redis: {out['succeeded']}/{out['migrations']} migrations ok; {data.get('keys_last', 0)} keys at the "
          f"last check; lost {data.get('keys_missing', 0)}, wrong {data.get('keys_wrong', 0)} over "
          f"{data.get('checks', 0)} checks ({data.get('checks_ok', 0)} ok); reads of another value "
          f"{data.get('read_mismatches', 0)}")
    print(f"connections: {out['connections_migrated']} migrated, {out['connections_broken']} broken, "
          f"{out['client_errors']} client errors; client gap median {out['gap_ms']['median']:.0f} ms, "
          f"p95 {out['gap_ms']['p95']:.0f} ms")
    print(f"{'op':5} {'window':7} {'n':>7} {'p50 ms':>9} {'p99 ms':>9}")
    for op, windows in sorted(out["latency_ms"].items()):
        for window in ("before", "during", "after"):
            w = windows[window]
            print(f"{op:5} {window:7} {w['n']:>7} {w['p50_ms']:>9.2f} {w['p99_ms']:>9.2f}")
        print(f"{op:5} during/before: p50 x{windows['during_over_before_p50']:.1f}, "
              f"p99 x{windows['during_over_before_p99']:.1f}")
    goal = (out["succeeded"] == out["migrations"] and out["connections_broken"] == 0 and not out["failure"]
            and data.get("keys_missing", 1) == 0 and data.get("keys_wrong", 1) == 0)
    print(f"goal (all migrations ok, 0 keys lost or wrong, 0 broken): {'met' if goal else 'NOT met'}")
    if out["failure"]:
        print(out["failure"])
    print(f"results: {out['folder']} (figure: figures/latency.png)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--migrations", type=int, default=20)
    parser.add_argument("--interval", type=float, default=2.5, help="seconds between migrations")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s per connection")
    parser.add_argument("--value-bytes", type=int, default=32)
    parser.add_argument("--lab", help="use this running redis lab instead of bringing up `bredis`")
    parser.add_argument("--out", default=str(REPO / "results"), help="parent of the results folder")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    out = measure(args)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        report(out)
    ok = not out["failure"] and out["connections_broken"] == 0 and out["succeeded"] == out["migrations"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
