"""Checks of this interpreter: the Python packages the kit imports, and pycriu.

Run inside the kit's .venv, they tell a missing `make python` (or `make criu`) apart from a
broken machine.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path

from p4cf_kit.doctor.checks.probes import version_tuple
from p4cf_kit.doctor.checks.result import Check, CheckResult

PROTOBUF_BELOW = (3, 21)

# (distribution, required, reason). Required: what the package imports (pyproject.toml).
PYTHON_PACKAGES: tuple[tuple[str, bool, str], ...] = (
    ("jupyterlab", False, "the notebooks"),
    ("ipywidgets", True, "the widget panels"),
    ("podman", True, "the Podman API client"),
    ("p4runtime-shell", True, "the P4Runtime control plane"),
    ("p4runtime", True, "P4Runtime protos"),
    ("protobuf", True, "P4Runtime protos (< 3.21 for p4runtime-shell 0.0.6)"),
    ("grpcio", True, "P4Runtime over gRPC"),
    ("pandas", True, "analysis"),
    ("matplotlib", True, "plots"),
    ("scapy", False, "packet inspection in tests and notebooks"),
)


def check_python_package(dist: str, required: bool, reason: str) -> CheckResult:
    """One Python distribution is installed in this interpreter (protobuf: below 3.21)."""
    name = f"python:{dist}"
    fix = "run `make python` (installs requirements.txt into .venv)"
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return CheckResult(name, False, required, f"not installed (needed for {reason})", fix)
    if dist == "protobuf" and version_tuple(version)[:2] >= PROTOBUF_BELOW:
        return CheckResult(name, False, required,
                           f"{version} is too new: p4runtime-shell 0.0.6 needs protobuf < 3.21",
                           "run `make python` (pins protobuf==3.20.3)")
    return CheckResult(name, True, required, version)


def python_package_checks() -> list[Check]:
    """One check per entry of PYTHON_PACKAGES, each named after its distribution."""
    made: list[Check] = []
    for dist, required, reason in PYTHON_PACKAGES:
        def check(dist: str = dist, required: bool = required, reason: str = reason) -> CheckResult:
            return check_python_package(dist, required, reason)
        check.__name__ = f"check_python:{dist}"
        made.append(check)
    return made


def check_pycriu() -> CheckResult:
    """pycriu (CRIU's Python module, with its protobuf images) imports in this interpreter."""
    fix = "run `make criu` (builds pycriu with CRIU; scripts/link-pycriu.sh adds it to .venv)"
    try:
        module = importlib.import_module("pycriu")
        importlib.import_module("pycriu.images")
    except Exception as exc:  # ImportError, or protobuf refusing the generated modules
        return CheckResult("pycriu", False, True, f"does not import: {exc}", fix)
    return CheckResult("pycriu", True, True, f"imports from {Path(module.__file__ or '?').parent}")
