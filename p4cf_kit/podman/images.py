"""The kit's container images, built offline and only when their inputs changed.

Why offline: the lab machines reach no container registry, so the base image is
assembled from busybox-static and the host's Python by `images/base/build-base.sh`
(FROM scratch + ADD rootfs.tar), and every build uses `--pull=never`. The workload
images (`images/tcp-server`, `images/tcp-client`) take `--build-arg BASE=...`, so a
user with a registry can build on `docker.io/library/python:3.11-slim` instead.

Why a content hash: each image carries the label `p4cf.inputs` (SHA-256 of what went
into it); `build_all()` skips an image whose label matches, so `make images` costs a
few `podman image inspect` calls when nothing changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p4cf_kit.errors import PodmanError, PrerequisiteError
from p4cf_kit.labels import IMAGE_PREFIX, LABEL, LABEL_KEY, LABEL_VALUE
from p4cf_kit.paths import IMAGES_DIR, PACKAGE_DIR, state_dir
from p4cf_kit.podman.runner import podman, podman_json

INPUTS_LABEL = "p4cf.inputs"
BASE_REF = f"{IMAGE_PREFIX}base:latest"
SERVER_REF = f"{IMAGE_PREFIX}tcp-server:latest"
CLIENT_REF = f"{IMAGE_PREFIX}tcp-client:latest"
WORKLOAD_DIR = PACKAGE_DIR / "workload"
BASE_SCRIPT = IMAGES_DIR / "base" / "build-base.sh"
BUILD_TIMEOUT_S = 600

# The base image's Containerfile lives here, not in a file: it only wraps the rootfs.
_BASE_CONTAINERFILE = f"""\
FROM scratch
ADD rootfs.tar /
LABEL {LABEL}
ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
CMD ["/usr/local/bin/python3"]
"""


@dataclass(frozen=True)
class WorkloadImage:
    """One image built from `images/<name>/Containerfile` on top of a base image."""

    name: str
    ref: str

    @property
    def containerfile(self) -> Path:
        return IMAGES_DIR / self.name / "Containerfile"


WORKLOAD_IMAGES = (WorkloadImage("tcp-server", SERVER_REF), WorkloadImage("tcp-client", CLIENT_REF))


@dataclass(frozen=True)
class BuildOutcome:
    """What `build_*` did for one image: `built` is False when it was already up to date."""

    ref: str
    built: bool
    seconds: float
    size_bytes: int
    image_id: str


@dataclass(frozen=True)
class ImageInfo:
    """One kit image as `p4cf images list` shows it."""

    ref: str
    image_id: str
    size_bytes: int
    created: str
    inputs: str


def _sha256(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def inspect_image(ref: str) -> dict[str, Any] | None:
    """`podman image inspect REF` as a dict, or None when the image is not there."""
    proc = podman("image", "inspect", ref, check=False, timeout=60)
    if proc.returncode != 0:
        return None
    data: list[dict[str, Any]] = json.loads(proc.stdout or "[]")
    return data[0] if data else None


def _labels(info: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = (info.get("Config") or {}).get("Labels") or info.get("Labels") or {}
    return labels


def base_python() -> str:
    """The interpreter copied into the base image: `P4CF_BASE_PYTHON`, else python3 on PATH."""
    python = os.environ.get("P4CF_BASE_PYTHON") or shutil.which("python3")
    if not python:
        raise PrerequisiteError("no python3 on PATH for the base image; install python3 or set P4CF_BASE_PYTHON")
    return python


def base_inputs_hash(python: str | None = None, busybox: str = "/bin/busybox") -> str:
    """Hash of what decides the base image: the script, the interpreter and busybox."""
    python = python or base_python()
    try:
        probe = subprocess.run(
            [python, "-c", "import os, sys, sysconfig; print(os.path.realpath(sys.executable)); "
                           "print(sys.version); print(sysconfig.get_paths()['stdlib'])"],
            capture_output=True, text=True, check=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise PrerequisiteError(f"{python} does not run ({exc}); set P4CF_BASE_PYTHON to a working python3") from exc
    exe, _version, stdlib = probe.stdout.strip().splitlines()[:3]
    stamps = []
    for path in (exe, busybox, stdlib):
        try:
            st = os.stat(path)
            stamps.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            stamps.append(f"{path}:missing")
    return _sha256(BASE_SCRIPT.read_bytes(), _BASE_CONTAINERFILE.encode(), probe.stdout.encode(),
                   "\n".join(stamps).encode())


def _workload_files() -> list[Path]:
    files = sorted(p for p in WORKLOAD_DIR.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    if not any(p.name == "tcp_server.py" for p in files):
        raise PrerequisiteError(f"the workload programs are missing from {WORKLOAD_DIR} "
                                "(tcp_server.py, tcp_client.py); restore them from git")
    return files


def workload_inputs_hash(image: WorkloadImage, base: str, base_id: str) -> str:
    """Hash of what decides a workload image: its Containerfile, the programs and the base."""
    parts = [image.containerfile.read_bytes(), base.encode(), base_id.encode()]
    for path in _workload_files():
        parts += [str(path.relative_to(WORKLOAD_DIR)).encode(), path.read_bytes()]
    return _sha256(*parts)


def _is_current(ref: str, inputs: str) -> dict[str, Any] | None:
    info = inspect_image(ref)
    if info is not None and _labels(info).get(INPUTS_LABEL) == inputs:
        return info
    return None


def _podman_build(ref: str, containerfile: Path, context: Path, inputs: str,
                  build_args: dict[str, str] | None = None) -> None:
    old = inspect_image(ref)
    args = ["build", "--pull=never", "--layers=false", "-f", str(containerfile), "-t", ref,
            "--label", f"{LABEL_KEY}={LABEL_VALUE}", "--label", f"{INPUTS_LABEL}={inputs}"]
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    podman(*args, str(context), timeout=BUILD_TIMEOUT_S)
    # The previous build of this tag is now untagged; remove it (kit-labelled) unless in use.
    if old is not None and old.get("Id") and _labels(old).get(LABEL_KEY) == LABEL_VALUE:
        new = inspect_image(ref)
        if new is not None and new.get("Id") != old["Id"]:
            podman("rmi", old["Id"], check=False, timeout=60)


def _outcome(ref: str, built: bool, seconds: float) -> BuildOutcome:
    info = inspect_image(ref)
    if info is None:
        raise PodmanError(f"image {ref} is missing right after its build; run `p4cf images build --force`")
    return BuildOutcome(ref=ref, built=built, seconds=seconds,
                        size_bytes=int(info.get("Size") or 0), image_id=str(info.get("Id", "")))


def build_base(force: bool = False, ref: str = BASE_REF, python: str | None = None) -> BuildOutcome:
    """Build the base image (localhost/p4cf-base:latest) from the host's Python unless it is
    up to date; `python` overrides the interpreter copied (default: `base_python()`)."""
    t0 = time.monotonic()
    python = python or base_python()
    inputs = base_inputs_hash(python)
    if not force and _is_current(ref, inputs):
        return _outcome(ref, False, time.monotonic() - t0)
    work = _work_dir("base-")
    try:
        env = dict(os.environ, P4CF_BASE_PYTHON=python)
        proc = subprocess.run(["bash", str(BASE_SCRIPT), str(work)], env=env, capture_output=True,
                              text=True, timeout=BUILD_TIMEOUT_S)
        if proc.returncode != 0:
            raise PrerequisiteError(f"{BASE_SCRIPT.name} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        (work / "Containerfile").write_text(_BASE_CONTAINERFILE)
        _podman_build(ref, work / "Containerfile", work, inputs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _outcome(ref, True, time.monotonic() - t0)


def _work_dir(prefix: str) -> Path:
    """A fresh directory under the state dir (one per build, so parallel builds do not mix)."""
    parent = state_dir() / "images"
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def _stage_context() -> Path:
    """A small build context holding only p4cf_kit/workload/ (the repo root holds the .venv).

    The Containerfiles use repo-root paths, so building with the repo root as context works too.
    """
    context = _work_dir("context-")
    target = context / "p4cf_kit" / "workload"
    for path in _workload_files():
        dest = target / path.relative_to(WORKLOAD_DIR)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    return context


def build_workload(image: WorkloadImage, base: str = BASE_REF, force: bool = False) -> BuildOutcome:
    """Build one workload image on `base` unless it is up to date."""
    t0 = time.monotonic()
    base_info = inspect_image(base)
    if base_info is None:
        raise PrerequisiteError(f"base image {base} is not present and the build never pulls; "
                                f"run `p4cf images build` (local base) or `podman pull {base}` first")
    inputs = workload_inputs_hash(image, base, str(base_info.get("Id", "")))
    if not force and _is_current(image.ref, inputs):
        return _outcome(image.ref, False, time.monotonic() - t0)
    context = _stage_context()
    try:
        _podman_build(image.ref, image.containerfile, context, inputs, {"BASE": base})
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return _outcome(image.ref, True, time.monotonic() - t0)


def build_all(force: bool = False, base: str | None = None) -> list[BuildOutcome]:
    """The base image (unless another `base` is given) and every workload image on it (the redis
    image where this machine has redis-server: podman/redis_image.py)."""
    outcomes: list[BuildOutcome] = []
    if base is None:
        outcomes.append(build_base(force=force))
        base = BASE_REF
    for image in WORKLOAD_IMAGES:
        outcomes.append(build_workload(image, base=base, force=force))
    from p4cf_kit.podman.redis_image import build_redis, redis_binary
    if redis_binary() is not None:  # the redis workload's image; without redis the other workloads still run
        outcomes.append(build_redis(base=base, force=force))
    if any(outcome.built for outcome in outcomes):
        prune_untagged()
    return outcomes


def prune_untagged() -> None:
    """Remove untagged kit images left by rebuilds (a replaced base still used by an old
    workload image cannot be removed at once; it can after the workload images moved on)."""
    podman("image", "prune", "--force", "--filter", f"label={LABEL}", check=False, timeout=120)


def list_images() -> list[ImageInfo]:
    """Every image carrying the kit label."""
    rows = podman_json("images", "--filter", f"label={LABEL}", "--format", "json")
    images: list[ImageInfo] = []
    for row in rows:
        names = row.get("Names") or ["<none>"]
        images.append(ImageInfo(ref=names[0], image_id=str(row.get("Id", ""))[:12],
                                size_bytes=int(row.get("Size") or 0), created=str(row.get("CreatedAt", "")),
                                inputs=str((row.get("Labels") or {}).get(INPUTS_LABEL, ""))[:12]))
    return sorted(images, key=lambda i: i.ref)
