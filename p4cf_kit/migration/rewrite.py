"""Rewriting a checkpoint so its sockets carry the destination host's address.

Why: CRIU restores an inet socket by binding it back to the address it had. On
another host network that address does not exist and restore fails with
`Can't bind inet socket back`. Every socket bound to the old address (in the
server's case the established ones; a listener on 0.0.0.0 has none) is recorded
in `checkpoint/files.img` as an `isk` entry; changing its `src_addr` there is all
that is needed, since the TCP stream images hold sequence numbers and queues but
no addresses.

Works on an extracted checkpoint directory (`rewrite_images_dir`) or on the tar
Podman exports (`rewrite_archive`). The tar is never unpacked: the few members
that change keep their size (same-length IDs, a same-length varint for the
address, JSON re-packed into the old size), so their bytes are overwritten where
they lie; only when a size changes is the tar streamed into a new one. Only the
inet entries of files.img are decoded (pure-Python protobuf is slow), so the
rewrite costs a few milliseconds inside the downtime. The same pass can give the container a new identity (`Identity`):
a fresh ID, a name and labels that say where it runs now. Podman 4.3 refuses
`--name` together with `--tcp-established`, and importing under the old ID fails
while the source's (exited) record still exists, so the export's `config.dump`
and `spec.dump` are edited instead; the ID is replaced by one of equal length
everywhere (paths under the container's storage dir too), so nothing moves.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import secrets
import socket
import struct
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from p4cf_kit.errors import KitError, PrerequisiteError

FILES_IMG = "files.img"
IMAGES_DIR = "checkpoint"          # where Podman puts CRIU's images inside its export
CONFIG_DUMP = "config.dump"        # Podman's container config inside its export
SPEC_DUMP = "spec.dump"            # its OCI runtime spec (paths contain the container ID)
_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"


class RewriteError(KitError):
    """A checkpoint could not be rewritten (missing or unreadable images)."""


@dataclass
class RewriteReport:
    """What a rewrite changed: sockets per kind, and labels added to config.dump."""

    sockets: int = 0
    by_state: dict[int, int] = field(default_factory=dict)   # TCP state number -> count
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Identity:
    """Who the restored container is: its name, extra labels, and a fresh 64-hex ID."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    container_id: str = field(default_factory=lambda: secrets.token_hex(32))


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
        import pycriu.images  # type: ignore[import-not-found]
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


def _compact(config: dict[str, Any], old_size: int) -> bytes:
    """Compact JSON, padded with spaces to `old_size` when it fits (Podman writes indented JSON,
    so it nearly always does), which lets the archive be patched in place."""
    out = json.dumps(config, separators=(",", ":")).encode()
    return out + b" " * (old_size - len(out)) if len(out) <= old_size else out


def _retarget_config(data: bytes, identity: Identity) -> tuple[bytes, str]:
    """config.dump under `identity`; returns it and the old container ID."""
    old_id = str(json.loads(data)["id"])
    if len(identity.container_id) != len(old_id):
        raise RewriteError(f"new container ID must have {len(old_id)} characters like the old one")
    config = json.loads(data.replace(old_id.encode(), identity.container_id.encode()))
    config["name"] = identity.name
    config["labels"] = {**(config.get("labels") or {}), **identity.labels}
    return _compact(config, len(data)), old_id


def _patch_in_place(archive: Path, changes: Mapping[str, tuple[tarfile.TarInfo, bytes]]) -> None:
    """Overwrite members' data where it lies in the tar (sizes unchanged; the header checksum
    covers only headers)."""
    with open(archive, "r+b") as handle:
        for member, data in changes.values():
            handle.seek(member.offset_data)
            handle.write(data)


def _copy_replacing(archive: Path, changes: Mapping[str, tuple[tarfile.TarInfo, bytes]]) -> None:
    """Stream the tar into a new one with the changed members, then rename it over the old."""
    dst = archive.with_name(archive.name + ".rewrite")
    try:
        with tarfile.open(archive, "r:") as tin, tarfile.open(dst, "w:", format=tin.format) as tout:
            for member in tin:
                change = changes.get(member.name)
                if change is not None:
                    member.size = len(change[1])
                    tout.addfile(member, io.BytesIO(change[1]))
                else:
                    tout.addfile(member, tin.extractfile(member) if member.isfile() else None)
        os.chmod(dst, archive.stat().st_mode & 0o7777)
        os.replace(dst, archive)
    finally:
        dst.unlink(missing_ok=True)


def rewrite_archive(archive: str | Path, old_ip: str, new_ip: str,
                    identity: Identity | None = None) -> RewriteReport:
    """Rewrite a Podman checkpoint export (uncompressed tar): sockets bound to `old_ip` get
    `new_ip`; with `identity`, the container also gets its ID, name and labels. Patched in
    place when sizes stay (the usual case), else streamed into a new tar renamed over the old."""
    src = Path(archive)
    report = RewriteReport()
    files_name = f"{IMAGES_DIR}/{FILES_IMG}"
    try:
        with tarfile.open(src, "r:") as tin:
            members = {m.name.lstrip("./"): m for m in tin if m.isfile()}
            if files_name not in members:
                raise RewriteError(f"{src} has no {files_name}: not a Podman checkpoint export")
            wanted = [files_name] + ([CONFIG_DUMP, SPEC_DUMP] if identity else [])
            old = {}
            for name in wanted:
                if name not in members:
                    raise RewriteError(f"{src} has no {name}: not a Podman checkpoint export")
                handle = tin.extractfile(members[name])
                assert handle is not None
                old[name] = handle.read()
        new = {}
        new[files_name], found = rewrite_files_image(old[files_name], old_ip, new_ip)
        report.sockets, report.by_state = found.sockets, found.by_state
        if identity is not None:
            new[CONFIG_DUMP], old_id = _retarget_config(old[CONFIG_DUMP], identity)
            new[SPEC_DUMP] = old[SPEC_DUMP].replace(old_id.encode(), identity.container_id.encode())
            report.labels = dict(identity.labels)
        changes = {members[n].name: (members[n], data) for n, data in new.items() if data != old[n]}
        if all(len(data) == members[n].size for n, data in new.items()):
            _patch_in_place(src, changes)
        else:
            _copy_replacing(src, changes)
    except (tarfile.TarError, OSError, ValueError, KeyError) as exc:
        raise RewriteError(f"cannot rewrite checkpoint archive {src}: {exc}") from exc
    return report


def archive_identity(archive: str | Path) -> tuple[str, str]:
    """(container ID, name) recorded in a checkpoint export's config.dump."""
    with tarfile.open(archive, "r:") as tin:
        for member in tin:
            if member.name.lstrip("./") == CONFIG_DUMP:
                handle = tin.extractfile(member)
                assert handle is not None
                config = json.loads(handle.read())
                return str(config["id"]), str(config["name"])
    raise RewriteError(f"{archive} has no {CONFIG_DUMP}: not a Podman checkpoint export")
