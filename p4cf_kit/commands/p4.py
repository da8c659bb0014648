"""`p4cf p4 compile`: compile p4/load_balance.p4 for BMv2 with p4c (host binary or local image).

The embedded target needs no compiler (it ships the P4Info); this is for the BMv2 target, which
needs the BMv2 JSON. After compiling, p4c's P4Info is compared with the shipped one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from p4cf_kit.paths import P4_PROGRAM


def _compile(args: argparse.Namespace) -> int:
    from p4cf_kit.switch.bmv2.compile import compile_program, ensure_compiled, p4info_difference
    from p4cf_kit.switch.bmv2.toolchain import require_p4c
    tool = require_p4c()
    out_dir = Path(args.out) if args.out else None
    build = compile_program if args.force else ensure_compiled
    out = build(P4_PROGRAM, out_dir, tool)
    print(f"{P4_PROGRAM.name} ({tool.describe()}):\n  BMv2 JSON  {out.json}\n  P4Info     {out.p4info}")
    diff = p4info_difference(out.p4info)
    if diff is not None:
        print(f"warning: p4c's P4Info differs from the shipped p4/load_balance.p4info.txtpb: {diff}; "
              "the embedded target and the controller use the shipped file")
        return 1
    print("  P4Info matches the shipped p4/load_balance.p4info.txtpb")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from p4cf_kit.switch.bmv2.compile import BUILD_DIR_ENV
    parser = sub.add_parser("p4", help="compile the P4 program with p4c (BMv2 target)")

    def show_help(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=show_help)
    actions = parser.add_subparsers(dest="p4_action", metavar="ACTION")
    comp = actions.add_parser("compile", help="p4c → build/p4/ (BMv2 JSON and P4Info)",
                              description="Compile the load balancer with p4c (a host binary, or the "
                                          "local image p4lang/p4c, never pulled).")
    comp.add_argument("--out", default=None,
                      help=f"output directory (default: ${BUILD_DIR_ENV} or build/p4 in the checkout)")
    comp.add_argument("--force", action="store_true", help="compile even when the outputs are up to date")
    comp.set_defaults(func=_compile)
