"""Reading CRIU image files with pycriu, e.g. the TCP state inside a checkpoint.

Why pycriu: the images are protobuf records behind CRIU magic numbers; pycriu (built with
CRIU by scripts/setup-criu.sh, linked into .venv by scripts/link-pycriu.sh) knows them all.
Its generated *_pb2.py modules work with the venv's protobuf 3.20.x.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p4cf_kit.errors import PrerequisiteError

TCP_ESTABLISHED = 1  # Linux TCP state number, as CRIU stores it in inet socket entries
FIX = "run `make criu` (builds pycriu) and scripts/link-pycriu.sh (adds it to .venv)"


@dataclass(frozen=True)
class TcpConnection:
    """One established TCP socket found in a checkpoint (addresses as the kernel had them)."""

    local: str
    local_port: int
    remote: str
    remote_port: int


def _pycriu_images() -> Any:
    try:
        import pycriu.images
    except ImportError as exc:
        raise PrerequisiteError(f"pycriu does not import ({exc}): {FIX}") from exc
    return pycriu.images


def pycriu_available() -> bool:
    """True when pycriu and its image modules import in this interpreter."""
    try:
        _pycriu_images()
    except PrerequisiteError:
        return False
    return True


def load_image(path: Path) -> dict[str, Any]:
    """Decode one CRIU image file into pycriu's dict form ({"magic": ..., "entries": [...]})."""
    images = _pycriu_images()
    with open(path, "rb") as handle:
        image: dict[str, Any] = images.load(handle)
    return image


def _address(family: int, words: list[int]) -> str:
    # CRIU stores addresses as 32-bit words in network byte order, read as host-order uint32.
    raw = b"".join(struct.pack("=I", word) for word in words)
    if family == socket.AF_INET6:
        return str(ipaddress.IPv6Address(raw[:16]))
    return str(ipaddress.IPv4Address(raw[:4]))


def established_tcp(checkpoint_dir: Path) -> list[TcpConnection]:
    """The established TCP sockets recorded in a checkpoint directory (its files.img)."""
    files = checkpoint_dir / "files.img"
    if not files.exists():
        raise PrerequisiteError(f"{files} not found: {checkpoint_dir} is not a CRIU checkpoint directory")
    found = []
    for entry in load_image(files)["entries"]:
        isk = entry.get("isk")
        if isk and isk.get("proto") == socket.IPPROTO_TCP and isk.get("state") == TCP_ESTABLISHED:
            found.append(TcpConnection(_address(isk["family"], isk["src_addr"]), isk["src_port"],
                                       _address(isk["family"], isk["dst_addr"]), isk["dst_port"]))
    return found
