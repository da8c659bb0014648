"""The kit-owned containers.conf, passed to Podman through `CONTAINERS_CONF`.

Why: checkpoint/restore needs a runtime with CRIU support (runc; Debian 12's crun
has none), and Podman's default rlimits exceed what these VMs allow, so containers
fail with `setrlimit ... Operation not permitted`. The system's own files stay
untouched; the kit writes its file under its state directory on every call, so a
changed host limit is picked up.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

from p4cf_kit.paths import state_dir, write_if_changed

RUNTIME = "runc"
# Podman 4.3 lowers its own RLIMIT_NPROC to this at start-up; a container asking for more
# fails with `error setting rlimit type 6` where root lacks CAP_SYS_RESOURCE (our VMs).
PODMAN_NPROC_CEILING = 32768


def _hard_limit(which: int, fallback: int) -> int:
    soft, hard = resource.getrlimit(which)
    limit = hard if hard != resource.RLIM_INFINITY else fallback
    return int(limit)


def _toml_lines(extra: dict[str, str] | None) -> str:
    return "".join(f'{key} = "{value}"\n' for key, value in (extra or {}).items())


def render_containers_conf(engine: dict[str, str] | None = None,
                           network: dict[str, str] | None = None) -> str:
    """The text of the kit's containers.conf for this host's limits; `engine` and `network`
    add keys to those tables (an emulated machine moves Podman's shared paths with them)."""
    nofile = min(_hard_limit(resource.RLIMIT_NOFILE, 1 << 20), 1 << 20)
    nproc = min(_hard_limit(resource.RLIMIT_NPROC, PODMAN_NPROC_CEILING), PODMAN_NPROC_CEILING)
    return (
        "# Written by P4ContainerFlow Kit (p4cf_kit.podman.conf); used only through CONTAINERS_CONF.\n"
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "\n"
        "[engine]\n"
        f'runtime = "{RUNTIME}"\n'
        'events_logger = "file"\n'
        + _toml_lines(engine) +
        "\n"
        "[network]\n"
        'network_backend = "netavark"\n'
        + _toml_lines(network)
    )


def containers_conf_path() -> Path:
    """Write (if changed) and return the kit's containers.conf."""
    return write_if_changed(state_dir() / "containers.conf", render_containers_conf())


def podman_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a Podman process: the caller's, plus the kit's CONTAINERS_CONF."""
    env = dict(os.environ if base is None else base)
    env["CONTAINERS_CONF"] = str(containers_conf_path())
    return env
