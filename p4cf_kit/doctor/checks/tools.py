"""Checks of the other programs the kit uses: firewall, ethtool, static busybox, kit images, BMv2, p4c.

BMv2 and p4c are optional (only the BMv2 target needs them) and count when either the binary
or its image is there.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Sequence

from p4cf_kit.doctor.checks.probes import dotted, resolve_binary, run, version_tuple
from p4cf_kit.doctor.checks.result import CheckResult
from p4cf_kit.errors import KitError
from p4cf_kit.podman.runner import podman

BMV2_IMAGE = "p4lang/behavioral-model"
P4C_IMAGE = "p4lang/p4c"
FIX_BMV2 = ("optional, only for the BMv2 target: see README section 'BMv2 target' "
            f"(`P4CF_P4LANG_DIR=/tarballs make p4lang`, `podman pull docker.io/{BMV2_IMAGE}`, "
            "or install simple_switch_grpc)")
FIX_P4C = ("optional, only for the BMv2 target: see README section 'BMv2 target' "
           f"(`P4CF_P4LANG_DIR=/tarballs make p4lang`, `podman pull docker.io/{P4C_IMAGE}`, or install p4c)")


def is_static_elf(path: str) -> bool:
    """True when `path` is an ELF executable without a program interpreter (PT_INTERP),
    i.e. it runs in an image that holds nothing else."""
    with open(path, "rb") as f:
        ident = f.read(16)
        if ident[:4] != b"\x7fELF":
            return False
        is64, endian = ident[4] == 2, "<" if ident[5] == 1 else ">"
        header = f.read(48 if is64 else 36)
        if is64:
            phoff, = struct.unpack_from(endian + "Q", header, 16)
            phentsize, phnum = struct.unpack_from(endian + "HH", header, 38)
        else:
            phoff, = struct.unpack_from(endian + "I", header, 12)
            phentsize, phnum = struct.unpack_from(endian + "HH", header, 26)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            p_type, = struct.unpack(endian + "I", f.read(4))
            if p_type == 3:  # PT_INTERP: needs a dynamic loader
                return False
    return True


def _local_image_names() -> list[str]:
    """Repository names of the images Podman has locally (kit configuration)."""
    out = podman("images", "--format", "{{.Repository}}", timeout=60).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def _has_image(names: Sequence[str], repository: str) -> bool:
    return any(n == repository or n.endswith("/" + repository) for n in names)


def check_firewall() -> CheckResult:
    """nftables or iptables is there (netavark and CRIU's network locking use them)."""
    found = []
    for tool in ("nft", "iptables"):
        path = shutil.which(tool)
        if path:
            proc = run([path, "--version"])
            found.append(f"{tool} {dotted(version_tuple(proc.stdout))}" if proc.returncode == 0 else tool)
    if not found:
        return CheckResult("firewall", False, True, "neither nft nor iptables found",
                           "run `make system` (apt-get install nftables iptables)")
    return CheckResult("firewall", True, True, ", ".join(found))


def check_ethtool() -> CheckResult:
    """ethtool is there (the kit turns off offloads on veths feeding the software switch)."""
    path = shutil.which("ethtool")
    if path is None:
        return CheckResult("ethtool", False, True, "not found", "run `make system` (apt-get install ethtool)")
    proc = run([path, "--version"])
    return CheckResult("ethtool", True, True, dotted(version_tuple(proc.stdout)) or path)


def check_busybox_static() -> CheckResult:
    """A statically linked busybox is there: the kit's images are built offline from it."""
    fix = "run `make system` (apt-get install busybox-static)"
    path, origin = resolve_binary("P4CF_BUSYBOX", "busybox")
    if path is None:
        return CheckResult("busybox-static", False, True, f"not found ({origin})", fix)
    try:
        static = is_static_elf(path)
    except OSError as exc:
        return CheckResult("busybox-static", False, True, f"cannot read {path}: {exc}", fix)
    if not static:
        return CheckResult("busybox-static", False, True, f"{path} is dynamically linked", fix)
    return CheckResult("busybox-static", True, True, f"{path} (static)")


def check_kit_images() -> CheckResult:
    """The kit's workload images are built (optional: `make images` builds them)."""
    # Lazily: the image list belongs to p4cf_kit.podman.images; a fault there fails only this check.
    from p4cf_kit.podman.images import WORKLOAD_IMAGES

    fix = "run `make images`"
    refs = [image.ref for image in WORKLOAD_IMAGES]
    try:
        missing = [ref for ref in refs if podman("image", "exists", ref, check=False).returncode != 0]
    except KitError as exc:
        return CheckResult("kit-images", False, False, str(exc), fix)
    if missing:
        return CheckResult("kit-images", False, False, "missing: " + ", ".join(missing), fix)
    return CheckResult("kit-images", True, False, ", ".join(refs))


def _version(path: str) -> str:
    """The first line `path --version` prints (p4c: "p4c 1.2.5.16 (SHA: ...)"), or "version unknown"."""
    try:
        proc = run([path, "--version"], timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "version unknown"
    lines = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
    if proc.returncode != 0 or not lines:
        return "version unknown"
    name = os.path.basename(path)
    return lines[0].strip().removeprefix(name + " ")  # p4c prints its own name first


def _binary_or_image(name: str, env_var: str, binary: str, image: str, fix: str) -> CheckResult:
    # Lazily, like the kit images: the lookup (PATH, then /opt/p4lang/bin) belongs to the toolchain.
    from p4cf_kit.switch.bmv2.toolchain import find_binary, origin_of

    path = find_binary(env_var, binary)
    _, origin = resolve_binary(env_var, binary)
    if path is not None:
        where = origin_of(binary, env_var, path)
        return CheckResult(name, True, False, f"{binary} {_version(path)} at {path} ({where})")
    try:
        if _has_image(_local_image_names(), image):
            return CheckResult(name, True, False, f"image {image} (no {binary} on PATH or in /opt/p4lang/bin)")
    except KitError as exc:
        return CheckResult(name, False, False, f"{binary} not found ({origin}); {exc}", fix)
    return CheckResult(name, False, False, f"neither {binary} ({origin} or in /opt/p4lang/bin) nor image {image}", fix)


def check_bmv2() -> CheckResult:
    """BMv2's simple_switch_grpc, for the optional BMv2 target (binary or local image)."""
    return _binary_or_image("bmv2", "P4CF_SIMPLE_SWITCH_GRPC", "simple_switch_grpc", BMV2_IMAGE, FIX_BMV2)


def check_p4c() -> CheckResult:
    """p4c, for compiling the program for the optional BMv2 target (binary or local image)."""
    return _binary_or_image("p4c", "P4CF_P4C", "p4c", P4C_IMAGE, FIX_P4C)
