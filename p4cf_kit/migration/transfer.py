"""Moving a checkpoint's images between machines: one tar stream through the kit, over SSH.

Why this way: the images leave the source machine as `tar` over the machine's SSH
connection (or are read here when the source is this machine), pass through the kit, and
land in the landing container's checkpoint folder on the destination the same way. Only
`files.img` is changed on the way (its sockets get the destination's address; the rewrite
is timed apart), so the source keeps its own images untouched until the destination runs,
and a rollback restores it from them. Nothing of the kit runs on either machine: `tar` is
all they need.

A cut stream (connection dropped, destination disk full, machine gone) raises
TransferError; the caller removes the half-filled landing container.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from p4cf_kit.errors import TransferError
from p4cf_kit.machines.machine import Machine
from p4cf_kit.migration import direct as direct_tcp
from p4cf_kit.migration.rewrite import FILES_IMG, rewrite_files_image
from p4cf_kit.migration.stall import STALL_S, Watchdog, watched

CHUNK = 1 << 20
# CRIU's statistics of the dump: written after the server exits, which is when the transfer
# starts (dump_watch.py), and not needed by the restore; `tar` would fail on a file changing
# under it, so it stays behind.
STATS_DUMP = "stats-dump"


@dataclass
class TransferReport:
    """What crossed the network: bytes and seconds (rewrite time excluded), files, sockets."""

    bytes: int = 0
    seconds: float = 0.0
    files: int = 0
    rewrite_s: float = 0.0
    sockets: int = 0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0


def _local_members(folder: Path) -> Iterator[tuple[tarfile.TarInfo, IO[bytes]]]:
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_file(follow_symlinks=False) and entry.name != STATS_DUMP:
            info = tarfile.TarInfo(entry.name)
            st = entry.stat(follow_symlinks=False)
            info.size, info.mode, info.mtime = st.st_size, st.st_mode & 0o7777, int(st.st_mtime)
            yield info, open(entry.path, "rb")


def _stream_members(stream: IO[bytes]) -> Iterator[tuple[tarfile.TarInfo, IO[bytes]]]:
    with tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK) as tar:
        for info in tar:
            if info.isfile():
                data = tar.extractfile(info)
                assert data is not None
                yield info, data


def _rewritten(info: tarfile.TarInfo, data: IO[bytes], old_ip: str, new_ip: str,
               report: TransferReport) -> IO[bytes]:
    """files.img with the destination's address; every other file passes as it is."""
    if os.path.basename(info.name) != FILES_IMG:
        return data
    t0 = time.monotonic()
    new, rw = rewrite_files_image(data.read(), old_ip, new_ip)
    report.rewrite_s += time.monotonic() - t0
    report.sockets += rw.sockets
    info.size = len(new)
    return io.BytesIO(new)


def _available(pipe: IO[bytes] | None) -> bytes:
    """What a pipe holds now, without waiting for its end: an SSH session multiplexed over a
    master connection lends its stderr to the master, which keeps it open until it notices a dead
    machine (15-20 s of keep-alives)."""
    if pipe is None:
        return b""
    os.set_blocking(pipe.fileno(), False)
    try:
        return pipe.read() or b""
    except (BlockingIOError, OSError, ValueError):
        return b""


NO_SPACE = "No space left on device"


def _check(proc: subprocess.Popen[bytes], what: str, machine: Machine, folder: Path) -> None:
    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    if proc.wait(timeout=60) != 0:
        lines = err.splitlines()
        lines = [ln for ln in lines if NO_SPACE in ln][:1] + [ln for ln in lines if NO_SPACE not in ln]
        shown = "\n".join(lines[:3] + ([f"... ({len(lines) - 3} more lines)"] if len(lines) > 3 else []))
        hint = (f"; machine {machine.name!r}'s disk is full where the images land ({folder}): free space "
                "there (`df` on that folder), or give its Podman storage a larger disk"
                if NO_SPACE in err else "")
        raise TransferError(f"{what} failed (exit {proc.returncode}): {shown or 'no message'}{hint}")


class ImageStream:
    """Both ends of one transfer, started before the source is frozen.

    Why start early: a new SSH session (and the `tar` it runs) costs a tenth of a second or
    more; started in the migration's prepare phase they wait, the source's `tar` for a "go"
    line and the destination's for data, so the transfer phase is the bytes alone."""

    def __init__(self, src: Machine, src_dir: Path, dst: Machine, dst_dir: Path, direct: bool = False,
                 stall_s: float = STALL_S) -> None:
        """`direct`: the other machine's end is a TCP stream (direct.py) instead of SSH; `stall_s`:
        seconds without a byte moved after which the path is taken for down (stall.py)."""
        self.src, self.src_dir, self.dst, self.dst_dir = src, src_dir, dst, dst_dir
        self.stall_s = stall_s
        self.sockets: list[socket.socket] = []
        self.reader: subprocess.Popen[bytes] | None = None
        self.writer: subprocess.Popen[bytes] | None = None
        self.token = direct_tcp.new_token()
        self.listener: socket.socket | None = None
        self.receiver_port = 0
        try:
            if not src.is_local and direct:
                back = src.peer_address()          # this machine, as the source reaches it
                self.listener = direct_tcp.listen(back)
                self.reader = src.popen(["python3", "-c", direct_tcp.SENDER, str(src_dir)], stdin=subprocess.PIPE)
                assert self.reader.stdin is not None
                self.reader.stdin.write(f"{back} {self.listener.getsockname()[1]} {self.token.hex()}\n".encode())
                self.reader.stdin.flush()
            elif not src.is_local:
                pack = f"read go && exec tar -C {src_dir} --exclude={STATS_DUMP} -cf - ."
                self.reader = src.popen(["sh", "-c", pack], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            if dst.is_local:
                dst_dir.mkdir(parents=True, exist_ok=True)
            elif direct:
                self.writer = dst.popen(["python3", "-c", direct_tcp.RECEIVER, str(dst_dir), dst.address],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                assert self.writer.stdin is not None and self.writer.stdout is not None
                self.writer.stdin.write(self.token.hex().encode() + b"\n")
                self.writer.stdin.close()
                line = self.writer.stdout.readline().strip()
                if not line.isdigit():
                    raise OSError(f"the receiver on machine {dst.name!r} did not start: "
                                  f"{self.abort().strip() or 'no message'}")
                self.receiver_port = int(line)
            else:
                self.writer = dst.popen(["sh", "-c", f"mkdir -p {dst_dir} && exec tar -C {dst_dir} -xf -"],
                                        stdin=subprocess.PIPE)
        except OSError as exc:
            self.abort()
            raise TransferError(f"could not open the image stream: {exc}") from exc

    def run(self, old_ip: str, new_ip: str) -> TransferReport:
        """Copy the images, with files.img's sockets moved from `old_ip` to `new_ip`.
        TransferError when the stream breaks (the caller removes what reached the destination)."""
        report = TransferReport()
        t0 = time.monotonic()
        out_tar: tarfile.TarFile | None = None
        dog = Watchdog(self._cut, self.stall_s)
        try:
            sock: socket.socket | None = None
            if self.reader is None:
                members = _local_members(self.src_dir)
            elif self.listener is not None:
                assert self.reader.stdin is not None
                self.reader.stdin.write(b"go\n")
                self.reader.stdin.close()
                conn, incoming = direct_tcp.accept(self.listener, self.token)
                self.sockets.append(conn)
                members = _stream_members(watched(incoming, dog, counts=self.writer is None))
            else:
                assert self.reader.stdin is not None and self.reader.stdout is not None
                self.reader.stdin.write(b"go\n")
                self.reader.stdin.close()
                members = _stream_members(watched(self.reader.stdout, dog, counts=self.writer is None))
            sink: IO[bytes] | None = None
            if self.writer is not None and self.receiver_port:
                sock = direct_tcp.connect(self.dst.address, self.receiver_port, self.token)
                self.sockets.append(sock)
                sink = watched(sock.makefile("wb"), dog)
            elif self.writer is not None:
                assert self.writer.stdin is not None
                sink = watched(self.writer.stdin, dog)
            if sink is not None:
                out_tar = tarfile.open(fileobj=sink, mode="w|", format=tarfile.GNU_FORMAT, bufsize=CHUNK)
            for info, data in members:
                data = _rewritten(info, data, old_ip, new_ip, report)
                name = os.path.basename(info.name)
                if out_tar is not None:
                    info.name = name
                    out_tar.addfile(info, data)
                else:
                    with open(self.dst_dir / name, "wb") as fh:
                        shutil.copyfileobj(data, fh, CHUNK)
                    os.chmod(self.dst_dir / name, info.mode)
                report.bytes += info.size
                report.files += 1
            if out_tar is not None and sink is not None and self.writer is not None:
                out_tar.close()
                sink.close()
                if sock is not None:
                    sock.shutdown(socket.SHUT_WR)
                    sock.close()
                _check(self.writer, f"unpacking the images on machine {self.dst.name!r} ({self.dst_dir})",
                       self.dst, self.dst_dir)
            if self.reader is not None:
                _check(self.reader, f"packing the images on machine {self.src.name!r} ({self.src_dir})",
                       self.src, self.src_dir)
        except Exception as exc:                 # a malformed image too (struct.error): never half-open
            if out_tar is not None:              # marks it closed, so its finaliser does not
                try:                             # write to the broken pipe again
                    out_tar.close()
                except (OSError, ValueError, tarfile.TarError):
                    pass
            why = self.abort()
            if dog.stalled:
                raise TransferError(f"the images did not reach machine {self.dst.name!r}: no byte moved "
                                    f"for {self.stall_s:g} s after {dog.moved / 1e6:.1f} MB (the path "
                                    f"between the machines is down?){why}") from exc
            full = (f"; this machine's disk is full where the images land ({self.dst_dir}): free space there"
                    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC else "")
            raise TransferError(f"the images did not reach machine {self.dst.name!r}: {exc}{why}{full}") from exc
        finally:
            dog.stop()
        report.seconds = time.monotonic() - t0 - report.rewrite_s
        if report.files == 0:
            raise TransferError(f"no images found in {self.src_dir} on machine {self.src.name!r}")
        return report

    def _cut(self) -> None:
        """The watchdog's act (another thread): end both ends so the blocked read or write fails."""
        for proc in (self.writer, self.reader):
            if proc is not None and proc.poll() is None:
                proc.kill()
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def abort(self) -> str:
        """End both ends (rollback); returns what they said on stderr, for the error."""
        if self.listener is not None:
            self.listener.close()
        why = ""
        for proc, where in ((self.writer, self.dst.name), (self.reader, self.src.name)):
            if proc is None:
                continue
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            err = _available(proc.stderr).decode(errors="replace").strip()
            if err:
                why += f" ({where}: {err})"
        return why


def stream_images(src: Machine, src_dir: Path, dst: Machine, dst_dir: Path, old_ip: str,
                  new_ip: str) -> TransferReport:
    """Copy the CRIU images in `src_dir` on `src` into `dst_dir` on `dst` (see ImageStream)."""
    return ImageStream(src, src_dir, dst, dst_dir).run(old_ip, new_ip)


def remove_images(machine: Machine, folder: Path) -> None:
    """Delete a (half-filled) image folder on `machine`; missing is fine."""
    if machine.is_local:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        machine.run(["rm", "-rf", str(folder)], check=False)
