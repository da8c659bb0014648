"""`p4cf p4 compile`: compile p4/load_balance.p4 with p4c where the user has it."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from p4cf_kit.errors import PrerequisiteError
from p4cf_kit.paths import P4_PROGRAM, REPO_ROOT


def p4c_command(program: Path, out_dir: Path, p4c: str = "p4c") -> list[str]:
    """The p4c invocation for the BMv2 v1model target, with P4Info in text format."""
    return [p4c, "--target", "bmv2", "--arch", "v1model", "--std", "p4-16",
            "-o", str(out_dir),
            "--p4runtime-files", str(out_dir / "load_balance.p4info.txtpb"),
            str(program)]


def compile_program(out_dir: Path) -> Path:
    """Compile the load balancer; returns the output directory (BMv2 JSON and P4Info)."""
    p4c = shutil.which("p4c")
    if p4c is None:
        raise PrerequisiteError(
            "p4c is not installed; the embedded target needs no compiler (it ships the P4Info). "
            "To use BMv2, install p4c (README, 'BMv2 target')")
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(p4c_command(P4_PROGRAM, out_dir, p4c), check=True)
    return out_dir


def _compile(args: argparse.Namespace) -> int:
    out = compile_program(Path(args.out))
    print(f"compiled {P4_PROGRAM.name} into {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("p4", help="compile the P4 program with p4c (BMv2 target)")
    parser.set_defaults(func=lambda _args: parser.print_help() or 2)
    actions = parser.add_subparsers(dest="p4_action", metavar="ACTION")
    comp = actions.add_parser("compile", help="p4c → build/p4/ (BMv2 JSON and P4Info)")
    comp.add_argument("--out", default=str(REPO_ROOT / "build" / "p4"), help="output directory")
    comp.set_defaults(func=_compile)
