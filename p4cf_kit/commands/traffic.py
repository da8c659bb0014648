"""`p4cf traffic`: run the client in the client host against the VIP and summarise it."""

from __future__ import annotations

import argparse

from p4cf_kit.commands._labargs import add_lab_options, emit, lab_name


def _run(args: argparse.Namespace) -> int:
    from p4cf_kit.lab import Lab
    lab = Lab.attach(lab_name(args))
    run = lab.traffic(connections=args.connections, rate=args.rate, duration=args.duration,
                      log_dir=args.log_dir)
    try:
        code = run.wait(timeout=args.duration + 30)
    except KeyboardInterrupt:
        code = run.stop()
    replies = run.replies()
    per_host = replies.groupby("host").size().to_dict() if len(replies) else {}
    summary = run.summary().get("totals", {})
    seconds = args.duration or 1.0
    data = {"lab": lab.config.name, "exit_code": code, "csv": str(run.csv_path), "replies": len(replies),
            "per_host": per_host, "messages_per_s": round(len(replies) / seconds, 1), "totals": summary}
    run.stop()
    lab.close()
    emit(args, data, f"{len(replies)} replies in {seconds:g} s ({len(replies) / seconds:.0f}/s): "
                     + ", ".join(f"{h} {n}" for h, n in sorted(per_host.items())) + f"\nlog: {run.csv_path}")
    return 0 if code == 0 else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("traffic", help="send client traffic to the VIP")
    add_lab_options(p)
    p.add_argument("-n", "--connections", type=int, default=32)
    p.add_argument("--rate", type=float, default=50.0, help="requests/s per connection")
    p.add_argument("--duration", type=float, default=10.0, help="seconds")
    p.add_argument("--log-dir", help="folder for the client's CSV (default: the lab's state folder)")
    p.set_defaults(func=_run)
