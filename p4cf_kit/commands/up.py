"""`p4cf up`: bring a lab up (networks, pods, servers, switch, load-balancer entries)."""

from __future__ import annotations

import argparse

from p4cf_kit.commands._labargs import add_lab_options, emit
from p4cf_kit.config import TARGETS, load_config, parse_config


def _run(args: argparse.Namespace) -> int:
    from p4cf_kit.lab import Lab
    cfg = load_config(args.config)
    if args.lab or args.hosts or args.target:
        raw = dict(cfg.source)
        lab = dict(raw.get("lab", {}))
        if args.lab:
            lab["name"] = args.lab
        if args.hosts:
            lab["hosts"] = args.hosts
        raw["lab"] = lab
        if args.target:
            raw["switch"] = {**raw.get("switch", {}), "target": args.target}
        cfg = parse_config(raw)
    lab = Lab(cfg)
    try:
        report = lab.up()
    finally:
        lab.close()
    data = {"lab": cfg.name, "up_s": round(report.total_s, 3),
            "phases": {k: round(v, 3) for k, v in report.phases.items()}}
    emit(args, data, f"lab {cfg.name} up in {report.total_s:.1f} s "
                     f"(hosts {', '.join(h.name + '=' + h.role for h in cfg.hosts)}; VIP {cfg.vip}:{cfg.port})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("up", help="bring a lab up")
    add_lab_options(p, with_config=True)
    p.add_argument("--hosts", type=int, help="number of hosts (2..8), overriding the config")
    p.add_argument("--target", choices=TARGETS, help="switch target, overriding the config's switch.target")
    p.set_defaults(func=_run)
