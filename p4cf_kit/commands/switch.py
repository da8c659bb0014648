"""`p4cf switch`: run the embedded P4Runtime switch in the foreground (like simple_switch_grpc)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from p4cf_kit.switch.embedded.target import add_arguments, run

    parser = subparsers.add_parser(
        "switch", help="run the embedded P4Runtime switch",
        description="Run the embedded P4Runtime switch of the load balancer program until "
                    "SIGTERM/SIGINT. Options follow simple_switch_grpc.")
    add_arguments(parser)
    parser.set_defaults(func=run)
