"""Shared options of the lab subcommands (`--config`, `--lab`, `--json`) and JSON printing."""

from __future__ import annotations

import argparse
import json
from typing import Any

from p4cf_kit.config import DEFAULT_LAB, load_config


def add_lab_options(parser: argparse.ArgumentParser, with_config: bool = False) -> None:
    if with_config:
        parser.add_argument("-c", "--config", help="lab config (.toml/.yaml); default: the packaged classic lab")
    parser.add_argument("--lab", default=None, help=f"lab name (default: from the config, else {DEFAULT_LAB!r})")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--no-wait", action="store_true",
                        help="if another operation holds the lab, refuse at once instead of waiting")


def lab_name(args: argparse.Namespace) -> str:
    if getattr(args, "lab", None):
        return str(args.lab)
    if getattr(args, "config", None):
        return load_config(args.config).name
    return DEFAULT_LAB


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)
