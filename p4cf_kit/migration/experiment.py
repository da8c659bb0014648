"""The migration experiment: traffic through the VIP, N live migrations, a results folder.

Why one runner: the numbers only mean something together (client log, phase
records, switch counters over the same CLOCK_REALTIME axis), so they are taken in
one run and written in the layout of p4cf_kit.results, which `p4cf plot` redraws.

The backend that moves is the lab's first backend (its home, e.g. h2); it
alternates between home and the first idle host (h4): h2→h4, h4→h2, ...
(starting from wherever it runs now). A `route` instead names the hosts it visits in
turn, as a cycle (h2,h4,h5,h4: h2→h4→h5→h4→h2→...), so one run can interleave kinds
of migration, e.g. same-machine and cross-machine ones under the same traffic and in
the same minutes (benchmarks/migration_downtime.py --machines 2 takes its baseline
so). Before
traffic starts, every pod's gateway routes get a small `rto_min` (tuning) so a
connection resumes right after the restore instead of at the next backoff step.
Switch counters are read between migrations (the P4Runtime session of this
process is a single one, so no reads run concurrently with a switch write).
A failed migration is recorded (ok=False, rolled back) and the run goes on.
Every migration of one experiment moves memory the same way: `mode`, else the
lab config's migration.mode. With redis, after each migration the client reads back
every key it wrote and, when the backends hold bulk data (backend.memory_mib), the
kit reads back every bulk key of the backend that moved (apps/bulk.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from p4cf_kit import analysis as an
from p4cf_kit import results
from p4cf_kit.apps import bulk
from p4cf_kit.apps.datacheck import DataLossError
from p4cf_kit.config import LabConfig, config_to_dict
from p4cf_kit.errors import ConfigError, MigrationError
from p4cf_kit.lablock import lab_lock
from p4cf_kit.migration import modes
from p4cf_kit.migration.migrate import migrate
from p4cf_kit.migration.plan import LabLike, backend_id
from p4cf_kit.migration.record import MigrationRecord
from p4cf_kit.migration.tuning import DEFAULT_RTO_MIN_MS, set_rto_min
from p4cf_kit.topology.pods import pod_net

PHASES_CSV = "migrations.csv"
DOWNTIME_CSV = "downtime.csv"                      # per connection and migration
MIGRATION_DOWNTIME_CSV = "migration_downtime.csv"  # one row per migration
COUNTER_PERIOD_S = 0.5


@dataclass(frozen=True)
class ExperimentOptions:
    """What to run: how many migrations, how far apart, and the traffic around them."""

    migrations: int = 10
    interval_s: float = 3.0
    connections: int = 16
    rate: float = 50.0
    warmup_s: float = 2.0
    rto_min_ms: int | None = DEFAULT_RTO_MIN_MS
    backend: str | None = None     # home of the backend that moves (default: the first backend)
    spare: str | None = None       # the other host it alternates with (default: the first idle host)
    what: str = "migration"
    fail_at: str | None = None
    mode: str | None = None        # how every migration moves memory (default: the config's migration.mode)
    route: tuple[str, ...] | None = None   # hosts the backend visits in turn, a cycle (instead of backend/spare)


@dataclass
class ExperimentResult:
    """Where the results are and what they say in short."""

    folder: Path
    records: list[MigrationRecord]
    summary: dict[str, Any] = field(default_factory=dict)


def _hosts(cfg: LabConfig, opts: ExperimentOptions) -> tuple[str, str]:
    home = opts.backend or cfg.backends[0].name
    spare = opts.spare or next((h.name for h in cfg.idle), None)
    if spare is None:
        raise ConfigError(f"lab {cfg.name} has no idle host to migrate to; use 4 hosts (h4 idle) or pass spare")
    return home, spare


def route_of(cfg: LabConfig, opts: ExperimentOptions, pool: list[str]) -> tuple[str, ...]:
    """The hosts the moving backend visits in turn, starting where it runs now (one of them
    serves it; the others are free). ConfigError, naming the host and the fix, for a route
    that cannot run: fewer than 2 hosts, an unknown host, the client, the same host twice in a
    row, a host that serves another backend, or no host of the route serving one."""
    if opts.route is None:
        home, spare = _hosts(cfg, opts)
        if home not in pool and spare in pool:   # a previous run left it away from home
            home, spare = spare, home
        return home, spare
    route = tuple(opts.route)
    if opts.backend or opts.spare:
        raise ConfigError("give either route or backend/spare, not both: the route's first serving host is the "
                          "backend that moves")
    if len(route) < 2:
        raise ConfigError(f"route {','.join(route) or '(empty)'} has {len(route)} host(s): name at least 2, "
                          f"e.g. h2,h4 (the backend's host first, then where it goes)")
    names = [h.name for h in cfg.hosts]
    for host in route:
        if host not in names:
            raise ConfigError(f"route names unknown host {host!r}: this lab has {', '.join(names)}")
        if cfg.host(host).role == "client":
            raise ConfigError(f"route names {host}, the client; a backend cannot move there")
    for a, b in zip(route, route[1:] + route[:1], strict=True):
        if a == b:
            raise ConfigError(f"route {','.join(route)} goes from {a} to {a} (it is a cycle: the last host "
                              f"leads back to the first); put another host between them")
    serving = sorted({h for h in route if h in pool}, key=route.index)
    if not serving:
        raise ConfigError(f"no host of route {','.join(route)} serves a backend (serving: {', '.join(pool)}); "
                          f"start the route at the backend that moves, e.g. {pool[0] if pool else 'h2'}")
    if len(serving) > 1:
        raise ConfigError(f"route {','.join(route)}: host {serving[1]} is not free, it serves a backend as "
                          f"{serving[0]} does; a route moves one backend, so its other hosts must be idle "
                          f"(`p4cf status` lists them)")
    start = route.index(serving[0])
    return route[start:] + route[:start]


def _read_counters(lab: Any, where: dict[str, str], reads: list[tuple[int, pd.DataFrame]]) -> None:
    frame = lab.counters()
    frame = frame.assign(backend=[where.get(h, h) for h in frame["host"]])
    reads.append((time.time_ns(), frame))


def _wait(lab: Any, seconds: float, where: dict[str, str], reads: list[tuple[int, pd.DataFrame]]) -> None:
    """Sleep `seconds`, reading the switch counters every COUNTER_PERIOD_S meanwhile."""
    end = time.monotonic() + seconds
    while True:
        _read_counters(lab, where, reads)
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(COUNTER_PERIOD_S, left))


def tune_routes(lab: LabLike, rto_min_ms: int) -> None:
    """rto_min on every pod's gateway routes (client and all servers, idle hosts included)."""
    for host in lab.config.hosts:
        machine = lab.machine_of(host)
        set_rto_min(pod_net(lab.names, host, machine).netns_path, rto_min_ms, machine)


def run_experiment(lab: Any, opts: ExperimentOptions, out: str | Path | None = None,
                   progress: Callable[[str], None] = lambda _: None) -> ExperimentResult:
    """Run `opts.migrations` migrations under traffic on a lab that is up; write the results folder.

    Holds the lab's lock throughout (its migrations nest inside), so nobody changes the lab
    under a running experiment."""
    if opts.migrations < 1:
        raise ConfigError(f"migrations = {opts.migrations}: use 1 or more")
    modes.require(opts.mode or lab.config.migration.mode)   # refused before any traffic, with the reason
    with lab_lock(lab.names.state, lab.config.name,
                  f"running an experiment ({opts.migrations} migrations)"):
        return _run_experiment(lab, opts, out, progress)


def _run_experiment(lab: Any, opts: ExperimentOptions, out: str | Path | None,
                    progress: Callable[[str], None]) -> ExperimentResult:
    route = route_of(lab.config, opts, lab.pool())
    mode = opts.mode or lab.config.migration.mode
    resolved = config_to_dict(lab.config)
    config = {**{k: v for k, v in resolved.items() if k != "hosts"},
              "hosts": {h["name"]: h for h in resolved["hosts"]},
              "experiment": {k: list(v) if isinstance(v, tuple) else v
                             for k, v in asdict(opts).items() if v is not None} | {"mode": mode}}
    folder = results.ResultsFolder.create(opts.what, config=config, parent=out,
                                          notes=f"{opts.migrations} {mode} migrations "
                                                + ("<->".join(route) if len(route) == 2 else "->".join(route)))
    if opts.rto_min_ms:
        tune_routes(lab, opts.rto_min_ms)
    where = {h: backend_id(lab.names.server(h), lab.machine_of(h)) for h in lab.pool()}   # location -> backend id
    reads: list[tuple[int, pd.DataFrame]] = []
    records: list[MigrationRecord] = []
    run = lab.traffic(connections=opts.connections, rate=opts.rate, log_dir=folder.raw_dir)
    try:
        run.wait_rows(opts.connections)
        _wait(lab, opts.warmup_s, where, reads)
        for k in range(1, opts.migrations + 1):
            src, dst = route[(k - 1) % len(route)], route[k % len(route)]
            try:
                rec = migrate(lab, src, dst, migration=k, fail_at=opts.fail_at, mode=mode)
                where[dst] = where.pop(src, rec.backend)
                if lab.config.workload.verifies_data:
                    check_bulk(lab, rec)
                    rec.set_data_check(run.verify(k))
            except MigrationError as exc:
                rec = exc.record or MigrationRecord(src=src, dst=dst, backend=where.get(src, src),
                                                    migration=k, error=str(exc))
            except ConfigError as exc:   # refused: the backend is not where it should be any more
                progress(f"m{k} {src}->{dst} refused, stopping: {exc}")
                break
            records.append(rec)
            progress(_line(rec))
            _wait(lab, opts.interval_s, where, reads)
    finally:
        run.stop()
    if not records:
        raise ConfigError(f"no migration could run (route {','.join(route)}); see `p4cf status`")
    _write_raw(lab, folder, records, reads)
    summary = summarize(folder)
    folder.finish(migrations=len(records), ok=sum(r.ok for r in records), summary=summary)
    from p4cf_kit.plots import report  # late: matplotlib is heavy
    report.figures_from_raw(folder)
    result = ExperimentResult(folder=folder.path, records=records, summary=summary)
    if lab.config.workload.verifies_data:
        raise_on_data_loss(result)
    return result


def check_bulk(lab: Any, rec: MigrationRecord) -> None:
    """Read back the bulk data of the backend that moved (backend.memory_mib of a redis lab), into
    its record; one that cannot be asked counts as failed (raise_on_data_loss says so)."""
    mib = lab.config.backend.memory_mib
    if not mib or lab.config.workload.kind != "redis":
        return
    try:
        rec.set_bulk_check(bulk.verify(lab.machine_of(rec.dst), lab.names.server(rec.dst), rec.backend,
                                       lab.config.port, mib, request=rec.migration))
    except DataLossError as exc:
        rec.set_bulk_check(None)
        rec.error = str(exc)


def _loss(r: MigrationRecord) -> str:
    """What one migration's data checks found, in words: the client's keys, then the bulk data."""
    client = (f"{r.data_missing} of {r.data_keys} keys missing, {r.data_wrong} wrong" if r.data_keys is not None
              else "not checked")
    if r.bulk_ok is not False:
        return client
    return client + ("; bulk data: " + (f"{r.bulk_missing} of {r.bulk_keys} keys missing, {r.bulk_wrong} wrong"
                                        if r.bulk_keys is not None else f"not checked ({r.error})"))


def raise_on_data_loss(result: ExperimentResult) -> None:
    """DataLossError naming each migration after which a key was missing or wrong (or unchecked),
    client keys and bulk data alike, and reads that did not return what was written."""
    bad = [r for r in result.records if r.ok and r.data_ok is not True]
    data = result.summary.get("data", {})
    mismatches = int(data.get("read_mismatches", 0))
    if not bad and not mismatches:
        return
    lines = [f"m{r.migration} {r.src}->{r.dst}: {_loss(r)}" for r in bad]
    if mismatches:
        lines.append(f"{mismatches} GET(s) read another value than the one written (client log, detail 'mismatch')")
    raise DataLossError("data lost or wrong after migration:\n  " + "\n  ".join(lines) +
                        f"\nresults: {result.folder}", folder=result.folder)


def _line(rec: MigrationRecord) -> str:
    t = rec.timings
    if not rec.ok:
        return f"m{rec.migration} {rec.src}->{rec.dst} FAILED in {rec.failed_phase}: {rec.error}"
    bulk = f" and {rec.bulk_keys} bulk keys" if rec.bulk_ok else ""
    data = "" if rec.data_ok is None else (
        f"; {rec.data_keys} keys{bulk} verified" if rec.data_ok else f"; DATA LOST: {_loss(rec)}")
    return (f"m{rec.migration} {rec.src}->{rec.dst}: checkpoint {t.checkpoint:.3f} rewrite {t.rewrite:.3f} "
            f"restore {t.restore:.3f} switch {t.switch:.3f} total {rec.total_s:.3f} s{data}")


def _write_raw(lab: Any, folder: results.ResultsFolder, records: list[MigrationRecord],
               reads: list[tuple[int, pd.DataFrame]]) -> None:
    rows = [r.as_row() for r in records]
    folder.write_migrations(rows)
    pd.DataFrame(rows).to_csv(folder.raw(PHASES_CSV), index=False)
    an.switch_counters_from_reads(reads).to_csv(folder.raw(results.SWITCH_COUNTERS), index=False)
    for host in lab.config.hosts:   # per location; a restored server logs from its restore on
        logs = lab.machine_of(host).podman("logs", lab.names.server(host.name), check=False)
        if logs.returncode == 0:
            folder.server_log(host.name).write_text(logs.stdout + logs.stderr)
    log = an.load_client_log(folder.raw(results.CLIENT_LOG))
    phases = an.phases_frame(rows)
    downtimes = an.downtime_for_migrations(log, phases)
    downtimes.to_csv(folder.raw(DOWNTIME_CSV), index=False)
    per_migration(phases, downtimes).to_csv(folder.raw(MIGRATION_DOWNTIME_CSV), index=False)


def per_migration(phases: pd.DataFrame, downtimes: pd.DataFrame) -> pd.DataFrame:
    """One row per migration: the client gap over its migrated connections and their survival."""
    rows = []
    for _, rec in phases.iterrows():
        k = int(rec["migration"])
        moved = downtimes[(downtimes["migration"] == k) & downtimes["migrated"]]
        kept = moved[moved["survived"]]
        rows.append({"migration": k, "src": rec["src"], "dst": rec["dst"], "ok": bool(rec["ok"]),
                     "total_s": rec["total_s"], "connections": len(moved), "survived": len(kept),
                     "broken": len(moved) - len(kept),
                     "gap_median_ms": kept["downtime_ms"].median() if len(kept) else float("nan"),
                     "gap_max_ms": kept["downtime_ms"].max() if len(kept) else float("nan")})
    return pd.DataFrame(rows)


def summarize(folder: results.ResultsFolder | str | Path) -> dict[str, Any]:
    """Client gap (median, p95 over migrated connections), survival and phase medians of a run."""
    folder = folder if isinstance(folder, results.ResultsFolder) else results.ResultsFolder.open(folder)
    phases = an.load_phases(folder.raw(PHASES_CSV))
    downtimes = pd.read_csv(folder.raw(DOWNTIME_CSV))
    moved = downtimes[downtimes["migrated"].astype(bool)]
    ok = phases[phases["ok"]]
    log = an.load_client_log(folder.raw(results.CLIENT_LOG))
    errors = an.error_events(log)
    gaps = an.describe(moved.loc[moved["survived"].astype(bool), "downtime_ms"])
    return {
        "migrations": int(len(phases)), "succeeded": int(len(ok)),
        "connections_migrated": int(len(moved)),
        "connections_broken": int((~moved["survived"].astype(bool)).sum()),
        "client_errors": int(len(errors)),
        "gap_ms": {"median": gaps["median"], "p95": gaps["p95"], "max": gaps["max"], "n": gaps["n"]},
        "phase_median_s": {c: float(ok[c].median()) for c in (*an.PHASE_COLUMNS, "total_s")} if len(ok) else {},
        "checkpoint_mb_median": float(ok["checkpoint_bytes"].median()) / 1e6 if len(ok) else float("nan"),
        **({"mode": ",".join(sorted(set(phases["mode"].dropna().astype(str))))} if "mode" in phases else {}),
        **({"data": data_summary(phases, folder)} if "data_ok" in phases and phases["data_ok"].notna().any() else {}),
        **({"latency_ms": latency} if (latency := an.latency_summary(log, phases)) else {}),
    }


def data_summary(phases: pd.DataFrame, folder: results.ResultsFolder) -> dict[str, Any]:
    """The data checks of a run: how many, the keys of the last, missing and wrong over all, and the
    GETs that read another value than written (the client's summary)."""
    checked = phases[phases["data_ok"].notna()]
    client = folder.raw(results.CLIENT_LOG).with_suffix(".summary.json")
    totals = json.loads(client.read_text()).get("totals", {}) if client.exists() else {}
    out = {"checks": len(checked), "checks_ok": int(checked["data_ok"].astype(bool).sum()),
           "keys_last": int(checked["data_keys"].fillna(0).iloc[-1]) if len(checked) else 0,
           "keys_missing": int(checked["data_missing"].fillna(0).sum()),
           "keys_wrong": int(checked["data_wrong"].fillna(0).sum()),
           "read_mismatches": int(totals.get("mismatches", 0))}
    if "bulk_ok" in phases and phases["bulk_ok"].notna().any():
        bulk_checked = phases[phases["bulk_ok"].notna()]
        out |= {"bulk_checks": len(bulk_checked), "bulk_checks_ok": int(bulk_checked["bulk_ok"].astype(bool).sum()),
                "bulk_keys": int(bulk_checked["bulk_keys"].fillna(0).max()),
                "bulk_missing": int(bulk_checked["bulk_missing"].fillna(0).sum()),
                "bulk_wrong": int(bulk_checked["bulk_wrong"].fillna(0).sum())}
    return out
