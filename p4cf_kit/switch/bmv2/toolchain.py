"""Find p4c and simple_switch_grpc: a host binary first, else a local Podman image.

Why both: BMv2 and p4c are packaged for few distributions, while p4lang publishes images
(`p4lang/p4c`, `p4lang/behavioral-model`). An image is only *looked up* here
(`podman image exists`), never pulled: pulling is the user's decision (README "BMv2 target").
A host binary is the one an environment variable names, else the one on PATH, else the one
`make p4lang` unpacked under /opt/p4lang/bin (p4lang's tarballs install there and are not put
on PATH). `p4cf doctor` reports through `origin_of`, so both agree on what is found.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from p4cf_kit.errors import PodmanError, PrerequisiteError
from p4cf_kit.podman.runner import podman

P4C_ENV = "P4CF_P4C"
SIMPLE_SWITCH_GRPC_ENV = "P4CF_SIMPLE_SWITCH_GRPC"
P4C_IMAGE_ENV = "P4CF_P4C_IMAGE"
BMV2_IMAGE_ENV = "P4CF_BMV2_IMAGE"
P4C_IMAGES = ("p4lang/p4c", "docker.io/p4lang/p4c")
BMV2_IMAGES = ("p4lang/behavioral-model", "docker.io/p4lang/behavioral-model")

P4LANG_PREFIX = Path("/opt/p4lang")
P4LANG_BIN = P4LANG_PREFIX / "bin"
INSTALL_RECORDS = P4LANG_PREFIX / "share" / "p4cf"  # scripts/setup-p4lang.sh: <tool>.installed
RECORD_OF = {"simple_switch_grpc": "bmv2", "p4c": "p4c"}

MISSING_BMV2 = "simple_switch_grpc not found: install BMv2 (README 'BMv2 target')"
MISSING_P4C = "p4c not found: install p4c (README 'BMv2 target')"


@dataclass(frozen=True)
class Tool:
    """Where a program runs: a host `binary`, or `program` inside a local Podman `image`."""

    program: str
    binary: str | None = None
    image: str | None = None

    def __post_init__(self) -> None:
        if (self.binary is None) == (self.image is None):
            raise ValueError(f"{self.program}: give exactly one of binary or image")

    @property
    def in_image(self) -> bool:
        return self.image is not None

    def describe(self) -> str:
        return f"{self.program} in image {self.image}" if self.image else str(self.binary)


def _executable(path: str | Path) -> str | None:
    return str(path) if os.path.isfile(path) and os.access(path, os.X_OK) else None


def find_binary(env_var: str, default: str) -> str | None:
    """The executable named by `env_var` (a path or a name on PATH), else `default` on PATH,
    else `default` in /opt/p4lang/bin."""
    wanted = os.environ.get(env_var) or default
    if "/" in wanted:
        return _executable(wanted)
    return shutil.which(wanted) or _executable(P4LANG_BIN / wanted)


def installed_from(program: str) -> str | None:
    """The tarball `make p4lang` installed `program` from (its install record), else None."""
    record = INSTALL_RECORDS / f"{RECORD_OF.get(program, program)}.installed"
    try:
        for line in record.read_text().splitlines():
            if line.startswith("tarball="):
                return line.split("=", 1)[1]
    except OSError:
        pass
    return None


def origin_of(program: str, env_var: str, binary: str) -> str:
    """Where the binary found for `program` came from, for doctor: env var, PATH, make p4lang."""
    if os.environ.get(env_var):
        return f"{env_var}"
    in_prefix = Path(binary).parent == P4LANG_BIN
    tarball = installed_from(program) if in_prefix else None
    where = "on PATH" if shutil.which(program) == binary else "not on PATH, found in /opt/p4lang/bin"
    if tarball:
        return f"{where}; `make p4lang` from {tarball}"
    return where


def image_candidates(env_var: str, defaults: Sequence[str]) -> tuple[str, ...]:
    """Image references to look for: the one `env_var` names first, then the defaults."""
    chosen = os.environ.get(env_var)
    return tuple(dict.fromkeys([chosen, *defaults] if chosen else defaults))


def find_image(candidates: Sequence[str]) -> str | None:
    """The first of `candidates` Podman has locally (no pull); None without Podman."""
    for ref in candidates:
        try:
            if podman("image", "exists", ref, check=False, timeout=60).returncode == 0:
                return ref
        except (PrerequisiteError, PodmanError):
            return None
    return None


def find_tool(program: str, env_var: str, image_env: str, images: Sequence[str]) -> Tool | None:
    """`program` as a host binary, else inside the first local image; None when neither."""
    binary = find_binary(env_var, program)
    if binary is not None:
        return Tool(program, binary=binary)
    image = find_image(image_candidates(image_env, images))
    return Tool(program, image=image) if image is not None else None


def find_p4c() -> Tool | None:
    return find_tool("p4c", P4C_ENV, P4C_IMAGE_ENV, P4C_IMAGES)


def find_simple_switch_grpc() -> Tool | None:
    return find_tool("simple_switch_grpc", SIMPLE_SWITCH_GRPC_ENV, BMV2_IMAGE_ENV, BMV2_IMAGES)


def require_p4c() -> Tool:
    """p4c, or PrerequisiteError saying how to get it."""
    tool = find_p4c()
    if tool is None:
        raise PrerequisiteError(f"{MISSING_P4C}; put p4c on PATH (or set {P4C_ENV}=/path/to/p4c), "
                                f"or pull its image: podman pull docker.io/{P4C_IMAGES[0]}")
    return tool


def require_simple_switch_grpc() -> Tool:
    """simple_switch_grpc, or PrerequisiteError saying how to get it."""
    tool = find_simple_switch_grpc()
    if tool is None:
        raise PrerequisiteError(
            f"{MISSING_BMV2}; put simple_switch_grpc on PATH (or set {SIMPLE_SWITCH_GRPC_ENV}=/path), "
            f"or pull its image: podman pull docker.io/{BMV2_IMAGES[0]}; or use target = \"embedded\"")
    return tool
