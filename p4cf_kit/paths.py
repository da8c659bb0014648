"""Where the kit finds its own files and keeps its state.

The state directory holds what the kit writes at run time (its containers.conf, CRIU
options, gated runtime, logs). It defaults to `/var/lib/p4cf` (root is required anyway) and
can be moved with `P4CF_STATE_DIR`.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
P4_DIR = REPO_ROOT / "p4"
IMAGES_DIR = REPO_ROOT / "images"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
P4_PROGRAM = P4_DIR / "load_balance.p4"
P4INFO_TXT = P4_DIR / "load_balance.p4info.txtpb"


def state_dir() -> Path:
    """The kit's writable state directory (created on first use)."""
    path = Path(os.environ.get("P4CF_STATE_DIR", "/var/lib/p4cf"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> Path:
    """Write a kit-generated file only when its text changed, atomically (a reader never sees it
    half written: Podman, runc and CRIU read these files while the kit runs); returns `path`."""
    if path.exists() and path.read_text() == text:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)
    return path


def results_dir() -> Path:
    """Default parent folder of experiment results (`P4CF_RESULTS_DIR` moves it)."""
    return Path(os.environ.get("P4CF_RESULTS_DIR", REPO_ROOT / "results"))
