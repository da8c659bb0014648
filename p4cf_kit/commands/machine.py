"""`p4cf machine emulate|ls|rm`: the kit's stand-in for a second machine (see
p4cf_kit.machines.emulated); a lab reaches it only over SSH, like a real server."""

from __future__ import annotations

import argparse
from typing import Any

from p4cf_kit.commands._labargs import emit


def _emulate(args: argparse.Namespace) -> int:
    from p4cf_kit.machines import emulated
    rec = emulated.emulate(args.name, link_gbit=args.link_gbit, uplinks=args.uplinks, disk_mib=args.disk_mib)
    rate = f"{rec.link_gbit:g} Gbit/s (tbf)" if rec.link_gbit else "unshaped"
    emit(args, {"machine": rec.name, "podman": rec.podman_url, "identity": rec.identity,
                "known_hosts": rec.known_hosts, "uplinks": list(rec.uplinks), "link_gbit": rec.link_gbit,
                "disk_mib": rec.disk_mib},
         f"emulated machine {rec.name}: ssh root@{rec.machine_addr}:{rec.ssh_port}, link {rate}, "
         f"{f'disk {rec.disk_mib} MiB, ' if rec.disk_mib else ''}"
         f"uplinks {', '.join(rec.uplinks)}\nuse it in a lab config as\n\n{rec.config_toml()}"
         f"(or simply: [machines.{rec.name}] emulated = true)")
    return 0


def _ls(args: argparse.Namespace) -> int:
    from p4cf_kit.machines import emulated
    rows: list[dict[str, Any]] = []
    for name in emulated.emulated_names():
        rec = emulated.load(name)
        rows.append({"machine": name, "address": rec.machine_addr if rec else None,
                     "link_gbit": rec.link_gbit if rec else None, "uplinks": list(rec.uplinks) if rec else []})
    text = "\n".join(f"{r['machine']:8} {r['address'] or '(half made)':14} "
                     f"{'unshaped' if not r['link_gbit'] else str(r['link_gbit']) + ' Gbit/s':12} "
                     f"{' '.join(r['uplinks'])}" for r in rows) or "no emulated machines"
    emit(args, rows, text)
    return 0


def _rm(args: argparse.Namespace) -> int:
    from p4cf_kit.machines import emulated
    names = emulated.emulated_names() if args.name == ["all"] else args.name
    removed = {name: emulated.remove(name) for name in names}
    emit(args, removed, "\n".join(f"machine {n}: removed {len(r)} items" for n, r in removed.items())
         or "no emulated machines")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("machine", help="emulate a second machine for multi-machine labs")

    def show_help(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=show_help)
    actions = parser.add_subparsers(dest="machine_action", metavar="ACTION")
    em = actions.add_parser(
        "emulate", help="create a stand-in machine: own netns, sshd, Podman, uplinks, rate-limited link")
    em.add_argument("name", help="machine name (1-6 lowercase letters/digits)")
    em.add_argument("--link-gbit", type=float, default=None, metavar="R",
                    help="rate-limit the link between the machines to R Gbit/s (tbf; default: unshaped)")
    em.add_argument("--uplinks", type=int, default=2, metavar="N",
                    help="NICs toward the switch, one per host placed there (default 2)")
    em.add_argument("--disk-mib", type=int, default=None, metavar="N",
                    help="give the machine a disk of N MiB (a tmpfs under its Podman storage), to try a "
                         "full disk; default: unbounded")
    em.add_argument("--json", action="store_true", help="print machine-readable JSON")
    em.set_defaults(func=_emulate)
    ls = actions.add_parser("ls", help="list emulated machines")
    ls.add_argument("--json", action="store_true", help="print machine-readable JSON")
    ls.set_defaults(func=_ls)
    rm = actions.add_parser("rm", help="remove emulated machines (`all` for every one)")
    rm.add_argument("name", nargs="+", help="machine name(s), or all")
    rm.add_argument("--json", action="store_true", help="print machine-readable JSON")
    rm.set_defaults(func=_rm)
