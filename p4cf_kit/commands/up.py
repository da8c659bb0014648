"""`p4cf up`: bring a lab up (networks, pods, servers, switch, load-balancer entries)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from p4cf_kit.apps.settings import KINDS
from p4cf_kit.commands._labargs import add_lab_options, emit
from p4cf_kit.config import TARGETS, load_config, parse_config, with_choices

if TYPE_CHECKING:
    from p4cf_kit.lab import Lab


def _run(args: argparse.Namespace) -> int:
    from p4cf_kit.lab import Lab
    cfg = load_config(args.config)
    if args.lab or args.hosts or args.target:
        raw = dict(cfg.source)
        section = dict(raw.get("lab", {}))
        if args.lab:
            section["name"] = args.lab
        if args.hosts:
            section["hosts"] = args.hosts
        raw["lab"] = section
        if args.target:
            raw["switch"] = {**raw.get("switch", {}), "target": args.target}
        cfg = parse_config(raw)
    cfg = with_choices(cfg, args.workload, args.memory_mib)
    lab = Lab(cfg)
    if not args.rebuild and _switch_only_down(lab):
        return _restart_switch(args, lab)
    try:
        report = lab.up()
    finally:
        lab.close()
    data = {"lab": cfg.name, "up_s": round(report.total_s, 3),
            "phases": {k: round(v, 3) for k, v in report.phases.items()}}
    data["workload"] = cfg.workload.kind
    data["memory_mib"] = cfg.backend.memory_mib
    memory = f", {cfg.backend.memory_mib} MiB per backend" if cfg.backend.memory_mib else ""
    emit(args, data, f"lab {cfg.name} up in {report.total_s:.1f} s "
                     f"(hosts {', '.join(h.name + '=' + h.role for h in cfg.hosts)}; VIP {cfg.vip}:{cfg.port}; "
                     f"workload {cfg.workload.kind}{memory})")
    return 0


def _switch_only_down(lab: Lab) -> bool:
    from p4cf_kit.recovery import switch_only_down
    return switch_only_down(lab)


def _restart_switch(args: argparse.Namespace, lab: Lab) -> int:
    """The lab is up but its switch died: bring back only the switch (containers untouched)."""
    from p4cf_kit.recovery import restart_switch
    try:
        report = restart_switch(lab)
    finally:
        lab.close()
    emit(args, {"lab": report.lab, "switch_restarted": report.__dict__},
         f"lab {report.lab} was up but its switch had died: started the switch again (pid {report.pid}) "
         f"in {report.restart_s:.1f} s and reinstalled its pipeline and {report.entries} entries from "
         f"the lab's record (pool {' '.join(report.pool)}); containers left alone "
         "(`p4cf up --rebuild` rebuilds everything instead)")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("up", help="bring a lab up")
    add_lab_options(p, with_config=True)
    p.add_argument("--hosts", type=int, help="number of hosts (2..8), overriding the config")
    p.add_argument("--target", choices=TARGETS, help="switch target, overriding the config's switch.target")
    p.add_argument("--memory-mib", "--ballast-mib", dest="memory_mib", type=int, metavar="MIB",
                   help="MiB each backend holds (echo: a ballast it keeps dirty; redis: data loaded into it "
                        "and checked after each migration), overriding backend.memory_mib")
    p.add_argument("--workload", choices=KINDS,
                   help="what the backends run, overriding the config's workload.kind (custom needs its "
                        "[workload] table in the config; README 'Workloads')")
    p.add_argument("--rebuild", action="store_true",
                   help="when the lab's switch died but its containers run, rebuild the whole lab "
                        "instead of restarting only the switch")
    p.set_defaults(func=_run)
