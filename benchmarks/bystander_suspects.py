"""What makes a migration slow down the connections it does not move: each suspect alone.

Under the same traffic (h1's client, 16 connections at 50 requests/s, spread over h2 and h3),
this runs, interleaved round by round, each thing a migration does on its own and measures
the extra reply time of h3's connections (the bystanders) in its window, as
analysis/bystanders.py does for migrations: their longest reply time in the window minus
their normal (median) one outside every window.

  idle        nothing (the baseline of this run: the client's and server's own jitter)
  switch      one P4Runtime MODIFY of h2's ecmp_nhop entry (to the next hop it has)
  nudge       the ICMP nudge: 8 host-unreachables per h2 connection, from h2's pod
  cpu         two busy loops (one per core) for 0.3 s, started by the kit as CRIU is
  cpu-nice19  the same busy loops at nice 19
  cpu-group19 the same busy loops in a session of their own, its autogroup at nice 19
  criu        a bare checkpoint + restore of h2's server in place (CRIU, network lock)
  criu-idle   the same at idle CPU priority (podman/idle_cpu.py)
  migration   a migration h2 -> h4 or back as before (P4CF_MIGRATION_IDLE=0); window
              checkpoint..switch, as in migration_downtime.py
  migration-idle  the same, its Podman, runc, CRIU and the source's conmon at idle CPU priority
              (P4CF_MIGRATION_SPLIT=0)
  migration-split the kit's default: as migration-idle, and from prepare to the switch the
              migration on one CPU, the lab's other containers and its switch on the others
              (migration/cpu_split.py)
  migration-spin  as `migration`, both CPUs kept awake by SCHED_IDLE busy loops meanwhile

    .venv/bin/python benchmarks/bystander_suspects.py [--rounds 6] [--suspects idle,cpu,...] [--json]

Printed per suspect: bystander extra reply time median / p95 / max (ms), p95 / idle p95, and
how long h3's server and the client waited on a run queue in the window (median per window,
/proc/PID/task/*/schedstat): ready to run, but given no CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from p4cf_kit import analysis as an  # noqa: E402
from p4cf_kit.config import parse_config  # noqa: E402
from p4cf_kit.lab import Lab  # noqa: E402
from p4cf_kit.migration import cpu_split  # noqa: E402
from p4cf_kit.migration import nudge as nudging  # noqa: E402
from p4cf_kit.migration.phases import checkpoint_in_place, restore_in_place  # noqa: E402
from p4cf_kit.migration.plan import backend_id  # noqa: E402
from p4cf_kit.podman import idle_cpu  # noqa: E402
from p4cf_kit.podman.idle_cpu import idle_group  # noqa: E402
from p4cf_kit.podman.restore_gate import GATES_DIR  # noqa: E402
from p4cf_kit.podman.runner import podman  # noqa: E402
from p4cf_kit.topology.pods import pod_net  # noqa: E402

OCTET = 156
BURN_S = 0.3
ALL = ("idle", "switch", "nudge", "cpu", "cpu-nice19", "cpu-group19", "criu", "criu-idle", "migration",
       "migration-idle", "migration-split", "migration-spin")


def burn(nice: int, own_group: bool = False) -> None:
    """One busy loop per core for BURN_S, as the kit starts CRIU (a child in its cgroup and
    session); `own_group`: in a session of its own whose autogroup gets nice `nice`."""
    loop = f"end=$(( $(date +%s%N) + {int(BURN_S * 1e9)} )); while [ $(date +%s%N) -lt $end ]; do :; done"
    cmd = ["sh", "-c", loop] if own_group else ["nice", "-n", str(nice), "sh", "-c", loop]
    procs = [subprocess.Popen(cmd, start_new_session=own_group) for _ in range(2)]
    if own_group:
        for p in procs:
            Path(f"/proc/{p.pid}/autogroup").write_text(str(nice))
    for p in procs:
        p.wait()


def split_env(value: str) -> contextlib.AbstractContextManager[None]:
    """P4CF_MIGRATION_SPLIT set to `value` for the block (migration/cpu_split.py)."""
    return env(cpu_split.ENV, value)


def suspects(lab: Lab, moving: str) -> dict[str, Callable[[], Window]]:
    """The actions, each one thing a migration does."""
    h2 = lab.config.host("h2")
    slot = lab.backend_slot(str(h2.ip))
    raw = nudging.raw_socket_in(pod_net(lab.names, h2).netns_path)
    where = {"at": "h2"}

    def nudge() -> None:
        log = lab_run["run"].replies()
        conns = log[log["host"] == moving].groupby("conn_id").last()
        clients = [nudging.ClientSeq(str(r["src_ip"]), int(r["src_port"]), lab.config.port, 0)
                   for _, r in conns.iterrows()]
        nudging.nudge(raw, clients, str(lab.config.vip))

    def criu(idle: str) -> Window:
        """Checkpoint + restore in place; with idle "1" both at idle CPU priority."""
        server = lab.names.server(where["at"])
        cid = podman("inspect", "--format", "{{.Id}}", server).stdout.strip()
        marker = GATES_DIR / f"{cid}.idle"
        with migration_idle_env(idle):
            if idle_group() is not None:
                GATES_DIR.mkdir(parents=True, exist_ok=True)
                marker.touch()
            try:
                t0 = time.time_ns()
                checkpoint_in_place(server)
                restore_in_place(server)
                return t0, time.time_ns()
            finally:
                marker.unlink(missing_ok=True)

    def migration(idle: str, spin: bool = False, split: str = "0") -> Window:
        """One migration; its window is the downtime's (checkpoint..switch), as the benchmark's.
        `spin`: every CPU kept awake meanwhile by a SCHED_IDLE busy loop (never halts)."""
        dst = "h4" if where["at"] == "h2" else "h2"
        loop = "while :; do :; done"
        spinners = [subprocess.Popen(["chrt", "-i", "0", "taskset", "-c", str(cpu), "sh", "-c", loop])
                    for cpu in sorted(os.sched_getaffinity(0))] if spin else []
        try:
            with migration_idle_env(idle), split_env(split):
                record = lab.migrate(where["at"], dst)
        finally:
            for p in spinners:
                p.kill()
                p.wait()
        where["at"] = dst
        return record.t_start_ns, record.t_end_ns

    def switch() -> None:   # to the next hop it has: where the backend runs now
        hop = lab.next_hop(where["at"])
        lab.move_slot(slot, hop.mac, hop.ip, hop.port)

    return {"idle": timed(lambda: time.sleep(BURN_S)), "switch": timed(switch), "nudge": timed(nudge),
            "cpu": timed(lambda: burn(0)), "cpu-nice19": timed(lambda: burn(19)),
            "cpu-group19": timed(lambda: burn(19, own_group=True)),
            "criu": lambda: criu("0"), "criu-idle": lambda: criu("1"),
            "migration": lambda: migration("0"), "migration-idle": lambda: migration("1"),
            "migration-split": lambda: migration("1", split="1"),
            "migration-spin": lambda: migration("0", spin=True)}


Window = tuple[int, int]


def timed(action: Callable[[], None]) -> Callable[[], Window]:
    def run() -> Window:
        t0 = time.time_ns()
        action()
        return t0, time.time_ns()
    return run


def migration_idle_env(value: str) -> contextlib.AbstractContextManager[None]:
    """P4CF_MIGRATION_IDLE set to `value` for the block (podman/idle_cpu.py)."""
    return env(idle_cpu.ENV, value)


@contextlib.contextmanager
def env(name: str, value: str) -> Iterator[None]:
    """Environment variable `name` set to `value` for the block."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


lab_run: dict[str, Any] = {}


def container_pid(name: str) -> int:
    return int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout.strip())


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if stat:
            children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    return tree


def kernel_threads(prefix: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and Path(f"/proc/{entry.name}/comm").read_text().startswith(prefix):
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def run_delay(pids: list[int]) -> int:
    """Nanoseconds the threads of `pids` and their children have waited on a run queue so far
    (/proc/PID/task/TID/schedstat, second field): a task ready to run that got no CPU."""
    total = 0
    for proc in [p for pid in pids for p in process_tree(pid)]:
        try:
            tids = os.listdir(f"/proc/{proc}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                total += int(Path(f"/proc/{proc}/task/{tid}/schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return total


def extra_per_window(log: pd.DataFrame, windows: list[tuple[str, int, int]], moving: str) -> pd.DataFrame:
    """Per window and bystander connection: longest reply time in it minus the normal one."""
    rep = an.replies(log)
    rep = rep[rep["host"] != moving].copy()
    rep["rtt_ms"] = (rep["recv_ns"].astype("int64") - rep["send_ns"].astype("int64")) / 1e6
    quiet = np.ones(len(rep), dtype=bool)
    margin = 300_000_000
    for _, start, end in windows:
        quiet &= ~((rep["recv_ns"] >= start - margin) & (rep["send_ns"] <= end + margin)).to_numpy()
    normal = rep[quiet].groupby("conn_id")["rtt_ms"].median()
    rows = []
    for what, start, end in windows:
        part = rep[(rep["recv_ns"] >= start) & (rep["send_ns"] <= end)]
        for conn_id, conn in part.groupby("conn_id"):
            rows.append({"suspect": what, "conn_id": conn_id,
                         "extra_ms": float(conn["rtt_ms"].max()) - float(normal.get(conn_id, np.nan)),
                         "window_ms": (end - start) / 1e6})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--suspects", default=",".join(ALL))
    parser.add_argument("--gap", type=float, default=1.0, help="seconds of quiet between actions")
    parser.add_argument("--lab", help="use this running lab instead of bringing up `susp`")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    chosen = args.suspects.split(",")
    if args.lab:
        lab, own = Lab.attach(args.lab), False
    else:
        lab = Lab(parse_config({"lab": {"name": "susp", "hosts": 4, "vip": f"10.{OCTET}.0.100",
                                        "subnet_pattern": f"10.{OCTET}.{{n}}.0/24"}}))
        lab.up()
        own = True
    windows: list[tuple[str, int, int]] = []
    delays: list[dict[str, Any]] = []
    try:
        from p4cf_kit.migration.experiment import tune_routes
        tune_routes(lab, 5)
        moving = backend_id(lab.names.server("h2"))
        run = lab.traffic(connections=16, rate=50)
        lab_run["run"] = run
        try:
            run.wait_rows(32)
            time.sleep(2.0)
            actions = suspects(lab, moving)
            watched = {"h3": [container_pid(lab.names.server("h3"))],
                       "client": [container_pid(lab.names.client(lab.config.client.name))],
                       "ksoftirqd": kernel_threads("ksoftirqd/")}
            for _ in range(args.rounds):
                for what in chosen:
                    before = {k: run_delay(pid) for k, pid in watched.items()}
                    start, end = actions[what]()
                    delays.append({"suspect": what, **{f"{k}_wait_ms": (run_delay(pid) - before[k]) / 1e6
                                                       for k, pid in watched.items()}})
                    windows.append((what, start, end))
                    time.sleep(args.gap)
            if lab.pool().count("h4"):
                lab.migrate("h4", "h2")
            time.sleep(1.0)
            log = run.read()
        finally:
            run.stop()
    finally:
        if own:
            lab.down()
        else:
            lab.close()
    extra = extra_per_window(log, windows, moving)
    out: dict[str, Any] = {}
    for what in chosen:
        d = an.describe(extra.loc[extra["suspect"] == what, "extra_ms"])
        w = [e - s for k, s, e in windows if k == what]
        waits = pd.DataFrame(delays)
        mine = waits[waits["suspect"] == what]
        out[what] = {"median": d["median"], "p95": d["p95"], "max": d["max"], "n": d["n"],
                     "window_ms": float(np.median(w)) / 1e6,
                     "h3_wait_ms": float(mine["h3_wait_ms"].median()),
                     "client_wait_ms": float(mine["client_wait_ms"].median()),
                     "ksoftirqd_wait_ms": float(mine["ksoftirqd_wait_ms"].median())}
    base = out.get("idle", {}).get("p95") or float("nan")
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"bystander extra reply time per suspect ({args.rounds} rounds; h3's connections):")
    print(f"{'suspect':>16} {'window':>8} {'median':>7} {'p95':>7} {'max':>7} {'p95/idle':>8} "
          f"{'h3 run-queue wait':>17} {'client wait':>11} {'ksoftirqd wait':>14}")
    for what, d in out.items():
        print(f"{what:>16} {d['window_ms']:>6.0f}ms {d['median']:>5.2f}ms {d['p95']:>5.2f}ms {d['max']:>5.2f}ms "
              f"{d['p95'] / base:>8.1f} {d['h3_wait_ms']:>15.1f}ms {d['client_wait_ms']:>9.1f}ms "
              f"{d['ksoftirqd_wait_ms']:>12.1f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
