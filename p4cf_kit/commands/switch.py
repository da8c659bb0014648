"""`p4cf switch`: run the embedded P4Runtime switch in the foreground (like simple_switch_grpc);
`p4cf switch restart`: restart a lab's switch and reinstall its entries, leaving the rest alone."""

from __future__ import annotations

import argparse

from p4cf_kit.commands._labargs import add_lab_options, emit, lab_name


def _restart(args: argparse.Namespace) -> int:
    from p4cf_kit.lab import Lab
    from p4cf_kit.recovery import restart_switch
    lab = Lab.attach(lab_name(args))
    try:
        report = restart_switch(lab)
    finally:
        lab.close()
    emit(args, report.__dict__,
         f"lab {report.lab}: switch {'restarted' if report.was_running else 'started again'} "
         f"(pid {report.pid}) in {report.restart_s:.1f} s; pipeline and {report.entries} entries "
         f"reinstalled from the lab's record; pool {' '.join(report.pool)}; containers left alone; "
         "counters start anew")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from p4cf_kit.switch.embedded.target import add_arguments, run

    parser = subparsers.add_parser(
        "switch", help="run the embedded P4Runtime switch; `switch restart`: restart a lab's",
        description="Run the embedded P4Runtime switch of the load balancer program until "
                    "SIGTERM/SIGINT. Options follow simple_switch_grpc. "
                    "`p4cf switch restart [--lab NAME]` instead restarts a lab's switch and "
                    "reinstalls its pipeline and entries, leaving containers alone.")
    add_arguments(parser)
    parser.set_defaults(func=run)
    actions = parser.add_subparsers(dest="switch_action", metavar="{restart}")
    restart = actions.add_parser("restart", help="restart a lab's switch; reinstall its entries")
    add_lab_options(restart)
    restart.set_defaults(func=_restart)
