"""A lab's switch state file (`switch.json` in the lab's state folder): which target runs, its
pid, where it serves P4Runtime, what forwards its frames, its container. Its log is
`switch.log` beside it, whichever target runs.

Why a file the switch writes: `p4cf status`, `p4cf down`, notebooks and bring-up must know
what runs whichever target it is, and only the switch knows its data path once its ports are
open. The embedded switch writes it itself (`--state-file`) once it serves P4Runtime; for
BMv2, a program of its own, the kit's launcher writes it when it starts the process; for a
remote switch (no process of ours), the kit writes it when a lab starts programming it. A file
naming a pid that no longer runs the switch (it ended, or the pid was reused) describes
nothing: `switch.targets.running()` checks.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_FILE = "switch.json"
LOG_FILE = "switch.log"


@dataclass(frozen=True)
class SwitchState:
    """What one running switch wrote about itself."""

    target: str          # "embedded", "bmv2" (switch.targets.TARGETS) or "remote"
    pid: int | None      # the process the kit signals to stop it; None: a remote switch, not ours
    grpc_addr: str
    data_path: str       # what forwards frames, in words (`p4cf status`)
    container: str | None = None   # BMv2 from an image: the container it runs in
    machine: str = "local"         # where the process runs (switch/elsewhere.py for another machine)
    forward_pid: int | None = None  # on another machine: the SSH forward of its P4Runtime socket here


def write_state(path: Path, state: SwitchState) -> None:
    """Write `state` to `path` at once (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(asdict(state), indent=1) + "\n")
    os.replace(tmp, path)


def state_file(state_dir: Path) -> Path:
    """Where a lab whose state folder is `state_dir` keeps its switch's state."""
    return state_dir / STATE_FILE


def read_state(path: Path) -> SwitchState | None:
    """The state in file `path`, None when there is none (or it is not one)."""
    try:
        return SwitchState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def clear_state(path: Path, pid: int | None = None) -> None:
    """Remove state file `path` (only if it names `pid`, when given)."""
    if pid is not None:
        current = read_state(path)
        if current is None or current.pid != pid:
            return
    path.unlink(missing_ok=True)
