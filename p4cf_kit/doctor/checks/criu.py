"""Checks of CRIU: found (P4CF_CRIU or PATH), recent enough, `criu check`, and a deep round trip.

P4CF_CRIU only moves what the doctor inspects: runc (under Podman) runs the `criu` it finds on
PATH, so the version check says so when the two differ.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from p4cf_kit.checkpoint.criu import NFT_LOCK_FEATURE, has_feature, kit_build_facts
from p4cf_kit.doctor.checks.probes import dotted, output, resolve_binary, run, version_tuple
from p4cf_kit.doctor.checks.result import CheckResult
from p4cf_kit.errors import KitError

CRIU_MIN = (4, 2)
FIX_CRIU = "run `make criu` (builds CRIU >= 4.2 from source into /usr/local; scripts/setup-criu.sh)"


def _criu() -> tuple[str | None, str]:
    return resolve_binary("P4CF_CRIU", "criu")


def _criu_missing(name: str, origin: str) -> CheckResult:
    installed = Path("/usr/local/sbin/criu")
    if origin.startswith("`") and installed.exists():
        return CheckResult(name, False, True, f"not found ({origin}) but installed at {installed}",
                           f"add {installed.parent} to PATH")
    if origin.startswith("`"):
        return CheckResult(name, False, True, f"not found ({origin})", FIX_CRIU)
    return CheckResult(name, False, True, f"not found ({origin})",
                       f"unset P4CF_CRIU to use `criu` on PATH, or point it at CRIU >= 4.2; or {FIX_CRIU}")


def check_criu_version() -> CheckResult:
    """CRIU is found and >= 4.2 (3.17 fails its vDSO probe; 4.1 cannot dump TCP on 6.16+)."""
    path, origin = _criu()
    if path is None:
        return _criu_missing("criu", origin)
    proc = run([path, "--version"])
    version = version_tuple(proc.stdout) if proc.returncode == 0 else ()
    if not version:
        return CheckResult("criu", False, True, f"{path} --version: {output(proc)}", FIX_CRIU)
    if version[:2] < CRIU_MIN:
        return CheckResult("criu", False, True,
                           f"{dotted(version)} at {path} is older than {dotted(CRIU_MIN)}", FIX_CRIU)
    detail = f"{dotted(version)} at {path}"
    on_path = shutil.which("criu")
    if on_path is None or os.path.realpath(on_path) != os.path.realpath(path):
        detail += f" (note: runc runs {on_path or 'no criu'} from PATH)"
    return CheckResult("criu", True, True, detail)


def check_criu_check() -> CheckResult:
    """`criu check` passes: the kernel has what CRIU needs to dump and restore."""
    path, origin = _criu()
    if path is None:
        return _criu_missing("criu-check", origin)
    proc = run([path, "check"], timeout=120)
    if proc.returncode != 0:
        return CheckResult("criu-check", False, True, f"`criu check` failed: {output(proc)}",
                           f"run `{path} check` as root to see which kernel feature is missing")
    return CheckResult("criu-check", True, True, output(proc))


def _describe_timings(timings: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f} s" for k, v in timings.items())


def check_criu_deep() -> CheckResult:
    """A real checkpoint/restore of a container holding an established TCP connection,
    through `p4cf_kit.checkpoint.roundtrip.tcp_checkpoint_roundtrip()`."""
    from p4cf_kit.checkpoint.roundtrip import tcp_checkpoint_roundtrip as roundtrip
    name = "criu-deep"
    try:
        result = roundtrip()
    except KitError as exc:
        return CheckResult(name, False, True, str(exc), FIX_CRIU)
    ok = result.ok
    parts = [result.detail, _describe_timings(result.timings), f"run {result.run_id}" if result.run_id else ""]
    detail = "; ".join(p for p in parts if p) or ("round trip passed" if ok else "round trip failed")
    return CheckResult(name, ok, True, detail, "" if ok else
                       "check `criu check --all` and the Podman checkpoint log; CRIU >= 4.2 and runc are needed")


def check_criu_fast_migration() -> CheckResult:
    """Optional: what keeps a migration's downtime short. CRIU with libnftables (its in-process
    network lock; the iptables lock costs about 100 ms per restore) and the kit's build with
    the fast-freeze patch (scripts/criu-patches/; without it the dump waits a 100 ms step)."""
    name = "criu-fast-migration"
    path, origin = _criu()
    if path is None:
        return _criu_missing(name, origin)
    notes, ok = [], True
    if has_feature(NFT_LOCK_FEATURE, path):
        notes.append("nftables network lock")
    else:
        ok = False
        notes.append("no nftables network lock (built without libnftables)")
    facts = kit_build_facts()
    if "patches" in facts and os.path.realpath(path).startswith("/usr/local/"):
        notes.append("kit build with its patches" + (f", kernel probe cached in {facts['rundir']}"
                                                      if facts.get("rundir") else ""))
    else:
        ok = False
        notes.append("not the kit's build (the dump may wait 100 ms for the cgroup freezer)")
    return CheckResult(name, ok, False, "; ".join(notes),
                       "" if ok else "rebuild with `make criu` "
                                     "(installs libnftables-dev, applies scripts/criu-patches/)")


def check_migration_modes() -> CheckResult:
    """Optional: which migration modes (migration/modes.py) this kernel and CRIU allow. Lazy
    needs userfaultfd; pre-copy needs soft-dirty page tracking, which many kernels lack."""
    from p4cf_kit.migration import modes  # late: the migration package is not needed otherwise
    found = [modes.support(mode) for mode in modes.MODES]
    usable = [s.mode for s in found if s.available]
    refused = [f"{s.mode} refused: {s.reason}" for s in found if not s.available]
    lazy = modes.support("lazy")
    return CheckResult("migration-modes", lazy.available, False,
                       "; ".join([f"usable: {', '.join(usable)}", *refused]),
                       "" if lazy.available else "use a kernel with CONFIG_USERFAULTFD (Linux >= 4.11) for lazy "
                                                 "migration; stop-and-copy works without it")
