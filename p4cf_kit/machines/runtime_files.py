"""The kit's runtime files on another machine: the gated runc, CRIU's options and its hook.

Why put files there at all: a migration onto another machine should cost what one within a
machine costs, and two things make the difference (measured on the emulated machine): a
restore Podman prepares only after the images arrived (~200 ms more downtime), and CRIU's
default iptables network lock (six iptables-restore processes at restore). Both are fixed by
the same passive files the kit writes for itself here (podman/restore_gate.py,
checkpoint/runc_conf.py): a runc wrapper with a restore gate, a CRIU options file for the
containers' `org.criu.config` annotation, and the action script that says when a restore
resumed. They are written over the machine's SSH connection into /run/p4cf (tmpfs: gone at
reboot), rewritten only when their text changed; nothing runs from them but runc and CRIU,
so there is still no agent of ours on the machine.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from p4cf_kit.checkpoint.criu import NFT_LOCK_FEATURE
from p4cf_kit.checkpoint.runc_conf import ANNOTATION, render_hook, render_runc_conf
from p4cf_kit.machines.machine import Machine
from p4cf_kit.podman.restore_gate import GATES_DIR, render_gated_runtime

REMOTE_DIR = PurePosixPath("/run/p4cf")


@dataclass(frozen=True)
class RuntimeFiles:
    """Where the files are on the machine."""

    runtime: str     # Podman's --runtime for landing containers
    criu_conf: str   # the value of the org.criu.config annotation

    def annotation_args(self) -> list[str]:
        return ["--annotation", f"{ANNOTATION}={self.criu_conf}"]


_written: dict[int, RuntimeFiles] = {}


def _write_script(files: dict[str, tuple[str, int]]) -> str:
    """One shell script that writes each file whose content differs (heredocs, quoted)."""
    lines = [f"mkdir -p {GATES_DIR} {REMOTE_DIR}"]
    for path, (text, mode) in files.items():
        tag = "P4CF_EOF"
        assert tag not in text
        lines += [f"cat > {path}.new <<'{tag}'", text.rstrip("\n"), tag,
                  f"chmod {mode:o} {path}.new",
                  f"if cmp -s {path}.new {path}; then rm -f {path}.new; else mv -f {path}.new {path}; fi"]
    return "\n".join(lines) + "\n"


def ensure_runtime_files(machine: Machine) -> RuntimeFiles:
    """Write (once per connection, and only what changed) the kit's runtime files on `machine`."""
    known = _written.get(id(machine))
    if known is not None:
        return known
    probe = machine.run(["sh", "-c", "command -v runc || echo /usr/bin/runc; "
                         f"criu check --feature {shlex.quote(NFT_LOCK_FEATURE)} >/dev/null 2>&1 "
                         "&& echo nft || echo no-nft"]).stdout.split()
    runc, nft = probe[0], probe[-1] == "nft"
    runtime, hook, conf = REMOTE_DIR / "p4cf-runc", REMOTE_DIR / "criu-hook", REMOTE_DIR / "criu-runc.conf"
    machine.run(["sh", "-c", _write_script({
        str(runtime): (render_gated_runtime(runc, GATES_DIR), 0o755),
        str(hook): (render_hook(GATES_DIR), 0o755),
        str(conf): (render_runc_conf(nft, Path(str(hook))), 0o644),
    })])
    files = _written[id(machine)] = RuntimeFiles(str(runtime), str(conf))
    return files


def forget(machine: Machine) -> None:
    """After the machine's connection closed (a new one writes the files again)."""
    _written.pop(id(machine), None)
