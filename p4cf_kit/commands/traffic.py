"""`p4cf traffic`: run the client in the client host against the VIP and summarise it.

The run fails (exit 1) when replies stopped on a live connection for longer than
`--max-silence`: a connection that is not broken but no longer answered is a failure an
unattended experiment must not hide.
"""

from __future__ import annotations

import argparse

from p4cf_kit.analysis.silence import DEFAULT_MAX_SILENCE_S, describe_silence, silences, too_silent, unanswered
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
    run.stop()  # the client writes its summary at exit
    full = run.summary()
    summary = full.get("totals", {})
    stopped = silences(full)
    over = too_silent(full, args.max_silence)
    seconds = args.duration or 1.0
    data = {"lab": lab.config.name, "exit_code": code, "csv": str(run.csv_path), "replies": len(replies),
            "per_host": per_host, "messages_per_s": round(len(replies) / seconds, 1), "totals": summary,
            "unanswered": unanswered(full), "max_silence_s": args.max_silence,
            "replies_stopped": [s.as_dict() for s in stopped], "workload": lab.config.workload.kind,
            "failed": code != 0 or bool(over) or bool(summary.get("mismatches"))}
    lab.close()
    text = (f"{len(replies)} replies in {seconds:g} s ({len(replies) / seconds:.0f}/s): "
            + ", ".join(f"{h} {n}" for h, n in sorted(per_host.items()))
            + f"\n{describe_silence(full, args.max_silence)}")
    if summary.get("broken"):
        text += f"\nbroken connections: {summary['broken']}"
    if summary.get("mismatches"):
        text += f"\nFAILED: {summary['mismatches']} read(s) returned another value than the one written"
    if over:
        text += (f"\nFAILED: replies stopped for longer than {args.max_silence:g} s on connection(s) "
                 + ", ".join(str(s.conn_id) for s in over)
                 + " (raise --max-silence if that is expected)")
    emit(args, data, text + f"\nlog: {run.csv_path}")
    return 1 if data["failed"] else 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("traffic", help="send client traffic to the VIP")
    add_lab_options(p)
    p.add_argument("-n", "--connections", type=int, default=32)
    p.add_argument("--rate", type=float, default=50.0, help="requests/s per connection")
    p.add_argument("--duration", type=float, default=10.0, help="seconds")
    p.add_argument("--log-dir", help="folder for the client's CSV (default: the lab's state folder)")
    p.add_argument("--max-silence", type=float, default=DEFAULT_MAX_SILENCE_S, metavar="S",
                   help="fail (exit 1) when a connection's replies stopped for longer than S seconds "
                        f"before the end (default {DEFAULT_MAX_SILENCE_S:g})")
    p.set_defaults(func=_run)
