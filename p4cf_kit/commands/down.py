"""`p4cf down`: remove everything a lab made (by label and name prefix; idempotent)."""

from __future__ import annotations

import argparse
import time

from p4cf_kit.commands._labargs import add_lab_options, emit, lab_name


def _run(args: argparse.Namespace) -> int:
    from p4cf_kit.lablock import lab_lock
    from p4cf_kit.topology import cleanup
    from p4cf_kit.topology.names import LabNames
    t0 = time.monotonic()
    removed = {}
    for lab in (cleanup.known_labs() if args.all else [lab_name(args)]):
        with lab_lock(LabNames(lab).state, lab, "taking the lab down"):
            removed[lab] = cleanup.down(lab)
    machines = {} if args.keep_machines else cleanup.remove_unused_emulated_machines()
    seconds = time.monotonic() - t0
    lines = []
    for lab, kinds in removed.items():
        what = ", ".join(f"{len(v)} {k}" for k, v in kinds.items() if v) or "nothing left"
        lines.append(f"lab {lab}: removed {what}")
    lines += [f"emulated machine {name}: removed" for name in machines]
    emit(args, {"removed": removed, "machines": machines, "down_s": round(seconds, 3)},
         "\n".join(lines or ["no kit lab found"]) + f" ({seconds:.1f} s)")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("down", help="remove a lab (also after a crash)")
    add_lab_options(p, with_config=True)
    p.add_argument("--all", action="store_true", help="every kit lab on this machine")
    p.add_argument("--keep-machines", action="store_true",
                   help="keep emulated machines (by default those no lab still uses are removed)")
    p.set_defaults(func=_run)
