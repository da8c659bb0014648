"""The redis workload's image, assembled offline like the base image and rebuilt only on change.

Why its own builder: the other workload images only copy the kit's scripts; this one carries a
binary of the host (Debian's redis-server) and the libraries it loads, gathered by
`images/redis/build-redis.sh` into a tar that the Containerfile adds to the base image.
The inputs hash covers the script, the entry script, the Containerfile, the binary and the base.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from p4cf_kit.errors import PrerequisiteError
from p4cf_kit.labels import IMAGE_PREFIX
from p4cf_kit.paths import IMAGES_DIR
from p4cf_kit.podman import images

REDIS_REF = f"{IMAGE_PREFIX}redis:latest"
REDIS_DIR = IMAGES_DIR / "redis"
BUILD_SCRIPT = REDIS_DIR / "build-redis.sh"
ENTRY_SCRIPT = REDIS_DIR / "redis-entry.sh"
CONTAINERFILE = REDIS_DIR / "Containerfile"
INSTALL_HINT = "install Debian's redis-tools (apt-get install redis-tools) or set P4CF_REDIS_SERVER"


def redis_binary() -> str | None:
    """The redis-server binary the image copies (see build-redis.sh), or None."""
    for candidate in (os.environ.get("P4CF_REDIS_SERVER"), shutil.which("redis-server"), "/usr/bin/redis-check-rdb"):
        if candidate and os.access(candidate, os.X_OK):
            return os.path.realpath(candidate)
    return None


def _inputs_hash(binary: str, base: str, base_id: str) -> str:
    st = os.stat(binary)
    return images._sha256(BUILD_SCRIPT.read_bytes(), ENTRY_SCRIPT.read_bytes(), CONTAINERFILE.read_bytes(),
                          f"{binary}:{st.st_size}:{st.st_mtime_ns}".encode(), base.encode(), base_id.encode())


def build_redis(base: str = images.BASE_REF, force: bool = False, ref: str = REDIS_REF) -> images.BuildOutcome:
    """Build the redis image on `base` unless it is up to date; PrerequisiteError without redis."""
    t0 = time.monotonic()
    binary = redis_binary()
    if binary is None:
        raise PrerequisiteError(f"no redis-server on this machine for the redis image; {INSTALL_HINT}")
    base_info = images.inspect_image(base)
    if base_info is None:
        raise PrerequisiteError(f"base image {base} is not present and the build never pulls; "
                                f"run `p4cf images build` (local base) or `podman pull {base}` first")
    inputs = _inputs_hash(binary, base, str(base_info.get("Id", "")))
    if not force and images._is_current(ref, inputs):
        return images._outcome(ref, False, time.monotonic() - t0)
    work = images._work_dir("redis-")
    try:
        env = dict(os.environ, P4CF_REDIS_SERVER=binary)
        proc = subprocess.run(["bash", str(BUILD_SCRIPT), str(work)], env=env, capture_output=True, text=True,
                              check=False,
                              timeout=images.BUILD_TIMEOUT_S)
        if proc.returncode != 0:
            raise PrerequisiteError(f"{BUILD_SCRIPT.name} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        images._podman_build(ref, CONTAINERFILE, work, inputs, {"BASE": base})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return images._outcome(ref, True, time.monotonic() - t0)
