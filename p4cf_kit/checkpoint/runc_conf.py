"""The CRIU options of the kit's migratable containers, handed to CRIU by runc.

Why: Podman drives CRIU through runc, and runc passes CRIU the configuration file named
by the container annotation `org.criu.config` (its settings override runc's own). The
kit's file asks for the nftables network lock: CRIU then locks and unlocks a netns
in-process through libnftables, where the default iptables lock spawns six
iptables-restore processes at restore (measured: CRIU's restore 190 ms -> 70 ms). The
dump records the method and the restore uses it, so one file serves both.

It also names an action script (`criu-hook`), which CRIU runs at each stage. The kit
only listens to one: when a restore is about to resume the tasks, the script creates
GATES_DIR/<container id>.resumed when the kit asked for it (GATES_DIR/<id>.wait exists), so a
migration points the switch as soon as the backend runs again, while runc, conmon and
Podman still do their bookkeeping (about 60 ms here).

Only the kit's server containers carry the annotation; the system's /etc/criu is never
read for them (an empty file keeps runc from falling back to /etc/criu/runc.conf).
"""

from __future__ import annotations

import functools
from pathlib import Path

from p4cf_kit.checkpoint.criu import NFT_LOCK_FEATURE, ensure_kdat_dir, has_feature
from p4cf_kit.paths import state_dir, write_if_changed
from p4cf_kit.podman.idle_cpu import CpuHierarchy, cpu_hierarchy, hook_lines
from p4cf_kit.podman.restore_gate import GATES_DIR

ANNOTATION = "org.criu.config"


@functools.lru_cache(maxsize=1)
def nftables_lock_supported() -> bool:
    """True when the CRIU on PATH can lock networks with nftables (built with libnftables);
    asked once per process."""
    return has_feature(NFT_LOCK_FEATURE)


def render_hook(gates_dir: Path = GATES_DIR, cpu: CpuHierarchy | None = None) -> str:
    """The action script: quiet for every stage but two of an awaited restore (GATES_DIR/<id>
    files, the container id read from the image folder). pre-restore: with GATES_DIR/<id>.idle,
    CRIU's cgroup (the landing container's, where runc put it) is made idle for the restore
    (podman/idle_cpu.py says why). pre-resume (the last stage that still knows the image folder;
    the sockets are live by then and CRIU resumes the tasks right after it returns): that cgroup
    back to normal before the backend runs, then the marker that says it resumes."""
    return f"""#!/bin/sh
# Written by P4ContainerFlow Kit (p4cf_kit.checkpoint.runc_conf): CRIU runs this at each stage.
case "$CRTOOLS_SCRIPT_ACTION" in pre-restore|pre-resume) ;; *) exit 0 ;; esac
images=$(readlink "$CRTOOLS_IMAGE_DIR" 2>/dev/null) || exit 0
id=${{images%/userdata/checkpoint}}
id=${{id##*/}}
{hook_lines(cpu)}if [ "$CRTOOLS_SCRIPT_ACTION" = pre-restore ]; then
  [ -e "{gates_dir}/$id.idle" ] && idle 1
  exit 0
fi
[ -e "{gates_dir}/$id.idle" ] && idle 0
[ -e "{gates_dir}/$id.wait" ] && : > "{gates_dir}/$id.resumed"
exit 0
"""


def render_runc_conf(nftables: bool, hook: Path | None) -> str:
    """The file's text: CRIU's long options, one per line, without dashes."""
    lines = ["# Written by P4ContainerFlow Kit (p4cf_kit.checkpoint.runc_conf) for its own containers,",
             "# through the annotation org.criu.config; CRIU reads it when runc checkpoints or restores."]
    if nftables:
        lines.append("network-lock nftables")
    if hook is not None:
        lines.append(f"action-script {hook}")
    return "\n".join(lines) + "\n"


def runc_conf_path() -> Path:
    """Write (if changed) and return the kit's CRIU configuration file."""
    ensure_kdat_dir()
    hook = write_if_changed(state_dir() / "criu-hook", render_hook(cpu=cpu_hierarchy()), 0o755)
    return write_if_changed(state_dir() / "criu-runc.conf", render_runc_conf(nftables_lock_supported(), hook))


def annotation_args() -> list[str]:
    """`podman run` arguments that make runc hand the kit's file to CRIU."""
    return ["--annotation", f"{ANNOTATION}={runc_conf_path()}"]
