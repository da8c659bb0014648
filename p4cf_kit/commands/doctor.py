"""`p4cf doctor [--json] [--deep]`: is this machine ready for the kit, and if not, what to do."""

from __future__ import annotations

import argparse

EPILOG = """\
exit status: 0 when every required check passes, 1 otherwise (warnings do not count).

binaries can be overridden (a path, or a name looked up on PATH):
  P4CF_CRIU                criu (default: criu on PATH)
  P4CF_BUSYBOX             static busybox (default: busybox on PATH)
  P4CF_SIMPLE_SWITCH_GRPC  BMv2 switch (default: simple_switch_grpc on PATH)
  P4CF_P4C                 P4 compiler (default: p4c on PATH)
P4CF_STATE_DIR moves the kit's state directory (its containers.conf, the doctor's
short-lived Podman API socket).
"""


def _doctor(args: argparse.Namespace) -> int:
    # Imported here so `p4cf --help` and other subcommands stay fast.
    from p4cf_kit.doctor import all_required_ok, run_checks
    from p4cf_kit.doctor.report import render_json, render_text

    if args.machine:
        from p4cf_kit.config import load_config
        from p4cf_kit.doctor.checks.machine import machine_checks
        from p4cf_kit.machines.registry import named_machine
        cfg = load_config(args.config) if args.config else None
        machine, mc = named_machine(args.machine, cfg)
        uplinks = [h.uplink for h in cfg.hosts if h.machine == args.machine] if cfg else []
        results = machine_checks(machine, mc, uplinks)
        print(render_json(results) if args.json else f"machine {args.machine}:\n" + render_text(results))
        return 0 if all_required_ok(results) else 1
    results = run_checks(deep=args.deep)
    print(render_json(results) if args.json else render_text(results))
    return 0 if all_required_ok(results) else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "doctor", help="check that this machine can run the kit (and say how to fix what is missing)",
        description="Check Python packages, root, Podman, runc, CRIU, kernel features and tools; "
                    "every failed check prints its fix.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print only a JSON object {ok, checks}")
    parser.add_argument("--deep", action="store_true",
                        help="also checkpoint and restore a container holding an established TCP "
                             "connection (slow; needs CRIU >= 4.2)")
    parser.add_argument("--machine", metavar="NAME",
                        help="check another machine of a lab over SSH instead of this one "
                             "(a [machines.NAME] of --config, or an emulated machine)")
    parser.add_argument("-c", "--config", help="lab config that defines --machine")
    parser.set_defaults(func=_doctor)
