"""The `p4cf` command line: a thin layer that finds its subcommands in `p4cf_kit.commands`.

Each module in `p4cf_kit/commands/` exposes `register(subparsers)`, which adds one
subcommand whose parser has `func` set to a callable taking the parsed arguments
and returning an exit status. Adding a subcommand is adding a module.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from p4cf_kit import __version__
from p4cf_kit import commands as _commands
from p4cf_kit.errors import KitError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p4cf",
        description="P4ContainerFlow Kit: P4 load balancing and live container migration experiments.",
    )
    parser.add_argument("--version", action="version", version=f"p4cf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(_commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{_commands.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    if getattr(args, "no_wait", False):
        from p4cf_kit.lablock import set_waiting
        set_waiting(False)
    try:
        return int(func(args) or 0)
    except KitError as exc:
        print(f"p4cf {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"p4cf {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
