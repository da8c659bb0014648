"""Finding CRIU and asking whether it can work here.

Why a minimum of 4.2: Debian 12's 3.17 fails its vDSO probe and 4.1.x cannot dump TCP
sockets on kernels >= 6.16; `make criu` (scripts/setup-criu.sh) builds 4.2.1 into
/usr/local. runc runs the `criu` it finds on PATH, so that is the one checked here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from p4cf_kit.errors import PrerequisiteError

MIN_VERSION = (4, 2)
BUILD_STAMP = Path("/usr/local/lib/p4cf/criu-build")   # the kit's CRIU build says what it was built from
FIX = "run `make criu` (builds CRIU >= 4.2 from source into /usr/local; scripts/setup-criu.sh)"
_SEARCH_EXTRA = ("/usr/local/sbin", "/usr/sbin", "/sbin")


@dataclass(frozen=True)
class CriuCheck:
    """Outcome of `criu check`: ok, and CRIU's own words when it is not."""

    ok: bool
    path: str
    version: str
    output: str


def find_criu() -> str:
    """Path of `criu` on PATH (plus the sbin dirs a non-root PATH may lack); raises if absent."""
    path = shutil.which("criu") or shutil.which("criu", path=os.pathsep.join(_SEARCH_EXTRA))
    if path is None:
        raise PrerequisiteError(f"criu is not installed: {FIX}")
    return path


def parse_version(text: str) -> tuple[int, ...]:
    """(4, 2, 1) from `criu --version` output ("Version: 4.2.1"); raises on anything else."""
    match = re.search(r"Version:\s*(\d+(?:\.\d+)+)", text)
    if match is None:
        raise PrerequisiteError(f"cannot read the CRIU version from {text.strip()!r}; {FIX}")
    return tuple(int(part) for part in match.group(1).split("."))


def criu_version(path: str | None = None) -> tuple[int, ...]:
    """The version of the given (or found) criu as a tuple."""
    path = path or find_criu()
    proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    return parse_version(proc.stdout + proc.stderr)


def version_text(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def require_criu() -> str:
    """Path of a criu >= 4.2, or PrerequisiteError naming what was found and the fix."""
    path = find_criu()
    version = criu_version(path)
    if version[:2] < MIN_VERSION:
        raise PrerequisiteError(
            f"{path} is CRIU {version_text(version)}; the kit needs >= {version_text(MIN_VERSION)} "
            f"(older ones cannot dump TCP sockets on this kernel): {FIX}")
    return path


def criu_check(path: str | None = None) -> CriuCheck:
    """Run `criu check` (kernel features CRIU needs); never raises for a failing check."""
    path = path or find_criu()
    version = version_text(criu_version(path))
    proc = subprocess.run([path, "check"], capture_output=True, text=True, timeout=60)
    output = (proc.stdout + proc.stderr).strip()
    return CriuCheck(ok=proc.returncode == 0, path=path, version=version, output=output)


NFT_LOCK_FEATURE = "network_lock_nftables"   # CRIU built with libnftables: in-process network lock


def has_feature(feature: str, path: str | None = None) -> bool:
    """`criu check --feature FEATURE` passes for the given (or found) criu; False when none runs."""
    try:
        proc = subprocess.run([path or find_criu(), "check", "--feature", feature],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired, PrerequisiteError):
        return False
    return proc.returncode == 0


def kit_build_facts(stamp: Path = BUILD_STAMP) -> dict[str, str]:
    """`key=value` lines of the kit's CRIU build stamp (scripts/setup-criu.sh); {} for other builds."""
    if not stamp.is_file():
        return {}
    return dict(line.split("=", 1) for line in stamp.read_text().splitlines() if "=" in line)


def ensure_kdat_dir() -> None:
    """Create the tmpfs folder where the kit's CRIU build caches its kernel probe (criu.kdat);
    /dev/shm is emptied at boot, and without the folder every CRIU run probes again."""
    rundir = kit_build_facts().get("rundir")
    if rundir:
        Path(rundir).mkdir(mode=0o700, parents=True, exist_ok=True)
