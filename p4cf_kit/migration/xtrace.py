"""TEMPORARY: timestamps of the transfer phase's pieces (P4CF_XFER_TRACE=file)."""
from __future__ import annotations

import json
import os
import select
import threading
import time

PATH = os.environ.get("P4CF_XFER_TRACE")
marks: list[tuple[str, float]] = []
extra: dict[str, object] = {}


def mark(name: str) -> None:
    if PATH:
        marks.append((name, time.monotonic()))


def sched(pid: int | str = "thread-self") -> list[int]:
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            a = [int(x) for x in f.read().split()]
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        cpu = int(s[s.rindex(")") + 2:].split()[36])
        return a + [cpu]
    except OSError:
        return []


def watch_exit(name: str, pid: int) -> None:
    if not PATH:
        return
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return

    def run() -> None:
        select.select([fd], [], [], 30)
        mark(name)
        os.close(fd)
    threading.Thread(target=run, daemon=True).start()


def flush(direction: str) -> None:
    if not PATH:
        return
    t0 = next((t for n, t in marks if n == "run"), marks[0][1] if marks else 0.0)
    rec = {"dir": direction, "t0": t0, "marks": [(n, round((t - t0) * 1000, 2)) for n, t in marks], **extra}
    with open(PATH, "a") as f:
        f.write(json.dumps(rec) + "\n")
    marks.clear()
    extra.clear()
