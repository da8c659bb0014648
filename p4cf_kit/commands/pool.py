"""`p4cf pool`: show or change the VIP's backend pool at run time.

`show`; `set h2 h3 h4` (exact pool; a new size remaps most flows); `add h4`,
`remove h3` (size changes); `replace h3 h4` (in place: only h3's flows move).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from p4cf_kit.commands._labargs import add_lab_options, emit, lab_name

if TYPE_CHECKING:
    from p4cf_kit.lab import Lab


def _run(args: argparse.Namespace) -> int:
    from p4cf_kit.lab import Lab
    lab = Lab.attach(lab_name(args))
    try:
        pool = _change(lab, args)
    finally:
        lab.close()
    emit(args, {"lab": lab.config.name, "pool": pool}, f"pool of {lab.config.vip}: {' '.join(pool)}")
    return 0


def _change(lab: Lab, args: argparse.Namespace) -> list[str]:
    if args.action == "show":
        pool = lab.pool()
    elif args.action == "set":
        pool = lab.pool(args.hosts)
    elif args.action == "add":
        pool = lab.add_backend(args.hosts[0])
    elif args.action == "remove":
        pool = lab.remove_backend(args.hosts[0])
    else:
        pool = lab.replace_backend(args.hosts[0], args.hosts[1])
    return pool


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("pool", help="show or change the backend pool")
    p.add_argument("action", choices=["show", "set", "add", "remove", "replace"], nargs="?", default="show")
    p.add_argument("hosts", nargs="*", help="host names (set: the pool; add/remove: one; replace: OLD NEW)")
    add_lab_options(p)

    def run(args: argparse.Namespace) -> int:
        need = {"show": (0, 0), "set": (1, 8), "add": (1, 1), "remove": (1, 1), "replace": (2, 2)}[args.action]
        if not need[0] <= len(args.hosts) <= need[1]:
            p.error(f"`pool {args.action}` takes {need[0]}..{need[1]} host names, got {len(args.hosts)}")
        return _run(args)
    p.set_defaults(func=run)
