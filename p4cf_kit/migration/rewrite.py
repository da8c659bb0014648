"""Rewriting a checkpoint so its sockets carry the destination host's address.

Why: CRIU restores an inet socket by binding it back to the address it had. On
another host network that address does not exist and restore fails with
`Can't bind inet socket back`. Every socket bound to the old address (in the
server's case the established ones; a listener on 0.0.0.0 has none) is recorded
in `checkpoint/files.img` as an `isk` entry; changing its `src_addr` there is all
that is needed, since the TCP stream images hold sequence numbers and queues but
no addresses.

Works on a CRIU image directory (`rewrite_images_dir`): in a migration, the landing
container's checkpoint folder once the source's images are moved there. Only the inet
entries of files.img are decoded (pure-Python protobuf is slow), so the rewrite costs a
few milliseconds inside the downtime.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p4cf_kit.errors import PrerequisiteError, RewriteError

FILES_IMG = "files.img"
_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"


@dataclass
class RewriteReport:
    """What a rewrite changed: sockets, counted per TCP state."""

    sockets: int = 0
    by_state: dict[int, int] = field(default_factory=dict)   # TCP state number -> count


def _words(raw: bytes) -> list[int]:
    """CRIU's form of an address: 32-bit words of the network-order bytes, read host-order."""
    return [struct.unpack("=I", raw[i:i + 4])[0] for i in range(0, len(raw), 4)]


def address_words(ip: str, family: int) -> list[int]:
    """`ip` as CRIU stores it for a socket of `family` (IPv4 in an AF_INET6 socket is v4-mapped)."""
    v4 = ipaddress.IPv4Address(ip).packed
    return _words(v4 if family == socket.AF_INET else _MAPPED_PREFIX + v4)


def pycriu_images() -> Any:
    """pycriu's image module (PrerequisiteError naming the fix when it is missing)."""
    try:
        import pycriu.images
    except ImportError as exc:
        raise PrerequisiteError(f"pycriu does not import ({exc}): run `make criu` and "
                                "scripts/link-pycriu.sh") from exc
    return pycriu.images


def split_entries(data: bytes) -> tuple[bytes, list[bytes]]:
    """Split an image into its magic header and its length-prefixed protobuf entries."""
    images = pycriu_images()
    first = struct.unpack_from("=i", data, 0)[0]
    head = 8 if first in (images.magic.by_name["IMG_COMMON"], images.magic.by_name["IMG_SERVICE"]) else 4
    magic = struct.unpack_from("=i", data, head - 4)[0]
    if images.magic.by_val.get(magic) != "FILES":
        raise RewriteError(f"not a files.img (magic {magic:#x})")
    entries, pos = [], head
    while pos < len(data):
        size = struct.unpack_from("=i", data, pos)[0]
        entries.append(data[pos + 4:pos + 4 + size])
        pos += 4 + size
    return data[:head], entries


def _may_be_inet(raw: bytes, inetsk: int) -> bool:
    """Cheap pre-check: protobuf writes field 1 (`type`) first, a one-byte varint for small enums;
    anything unexpected is parsed in full rather than skipped."""
    return not (len(raw) >= 2 and raw[0] == 0x08 and raw[1] < 0x80 and raw[1] != inetsk)


def rewrite_files_image(data: bytes, old_ip: str, new_ip: str) -> tuple[bytes, RewriteReport]:
    """A files.img (bytes) with every inet socket bound to `old_ip` bound to `new_ip` instead.

    Only inet socket entries are decoded (pure-Python protobuf is slow: decoding all of
    them costs tens of ms inside the migration's downtime); the rest are kept byte for byte."""
    images = pycriu_images()
    inetsk = images.pb.INETSK
    head, entries = split_entries(data)
    report = RewriteReport()
    out = [head]
    for raw in entries:
        if _may_be_inet(raw, inetsk):
            entry = images.pb.file_entry()
            entry.ParseFromString(raw)
            isk = entry.isk
            if entry.type == inetsk and isk.family in (socket.AF_INET, socket.AF_INET6) \
                    and list(isk.src_addr) == address_words(old_ip, isk.family):
                del isk.src_addr[:]
                isk.src_addr.extend(address_words(new_ip, isk.family))
                raw = entry.SerializeToString()
                report.sockets += 1
                report.by_state[isk.state] = report.by_state.get(isk.state, 0) + 1
        out.append(struct.pack("=i", len(raw)) + raw)
    return b"".join(out), report


def rewrite_images_dir(images_dir: str | Path, old_ip: str, new_ip: str) -> RewriteReport:
    """Rewrite `files.img` of an extracted CRIU image directory in place."""
    path = Path(images_dir) / FILES_IMG
    if not path.is_file():
        raise RewriteError(f"{path} not found: {images_dir} is not a CRIU image directory")
    data, report = rewrite_files_image(path.read_bytes(), old_ip, new_ip)
    tmp = path.with_suffix(".img.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return report
