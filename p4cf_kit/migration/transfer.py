"""Moving a checkpoint's images between machines: one tar stream, started before the freeze.

Why this way: the images leave the source's checkpoint folder as a tar stream and land in
the landing container's checkpoint folder, read and written by the kernel and GNU tar, not by
Python: where the source is this machine the kit writes the stream itself (headers, then each
file by `sendfile`), where the destination is this machine a `tar -x` here reads it straight
from the connection (tar_stream.py). Only `files.img` is changed on the way (its sockets get
the destination's address; the rewrite is timed apart): in memory before it is sent, or in
the destination's copy once it landed. The source keeps its own images untouched until the
destination runs, and a rollback restores it from them. Nothing of the kit is installed on
either machine: `tar` and `python3 -c` are all they need. Between two other machines the
stream passes through the kit (Python's tarfile, the rewrite on the way). Over a direct TCP
stream the transfer ends when the other machine's end says on the connection that all landed
(tar_stream.py says how), not when its SSH session's exit status arrives; `close` collects
those sessions afterwards, outside the downtime. Over a direct stream with this machine at
one end, the images also leave while CRIU still dumps, each once CRIU closed it (`begin`,
tar_stream.py says why): the transfer phase is then what is left after the dump.

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
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from p4cf_kit.errors import TransferError
from p4cf_kit.machines.machine import LOCAL, Machine
from p4cf_kit.migration import direct as direct_tcp
from p4cf_kit.migration import tar_stream
from p4cf_kit.migration.rewrite import FILES_IMG, rewrite_files_image
from p4cf_kit.migration.stall import STALL_S, Watchdog, watched
from p4cf_kit.migration.tar_stream import BUSY, DONE, FIN, GO, SENT, TAR_X, ClosedFiles, Sender, recv_exact

CHUNK = 1 << 20
# CRIU's statistics of the dump: written after the server exits, which is when the transfer
# starts (dump_watch.py), and not needed by the restore; `tar` would fail on a file changing
# under it, so it stays behind.
STATS_DUMP = tar_stream.STATS_DUMP


@dataclass
class TransferReport:
    """What crossed the network: bytes, files, sockets rewritten; `seconds` is the transfer
    phase (from the dump's end until all landed, rewrite time excluded), the part of the
    transfer inside the downtime; `early_bytes` left while CRIU still dumped (begin), before
    the phase; `busy_s` is the time the stream moved file bytes, measured by the receiver (0
    where it cannot say: then the phase stands for it)."""

    bytes: int = 0
    seconds: float = 0.0
    files: int = 0
    rewrite_s: float = 0.0
    sockets: int = 0
    early_bytes: int = 0
    busy_s: float = 0.0

    @property
    def mb_per_s(self) -> float:
        """The rate while bytes moved (the link's share the stream used)."""
        moving = self.busy_s or self.seconds
        return self.bytes / moving / 1e6 if moving > 0 else 0.0


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
            if info.isfile() and os.path.basename(info.name) != SENT:   # not an image: its exit is checked
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
RECEIVER_WORDS_S = 2.0   # a receiver that ended is waited for this long, for its message
CLOSE_S = 5.0            # an end that said it is done is given this long to exit, after `run`


def _full_hint(machine: Machine, folder: Path) -> str:
    return (f"; machine {machine.name!r}'s disk is full where the images land ({folder}): free space "
            "there (`df` on that folder), or give its Podman storage a larger disk")


def _check(proc: subprocess.Popen[bytes], what: str, machine: Machine, folder: Path) -> None:
    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    if proc.wait(timeout=60) != 0:
        lines = err.splitlines()
        lines = [ln for ln in lines if NO_SPACE in ln][:1] + [ln for ln in lines if NO_SPACE not in ln]
        shown = "\n".join(lines[:3] + ([f"... ({len(lines) - 3} more lines)"] if len(lines) > 3 else []))
        hint = _full_hint(machine, folder) if NO_SPACE in err else ""
        raise TransferError(f"{what} failed (exit {proc.returncode}): {shown or 'no message'}{hint}")


@contextmanager
def _ahead() -> Iterator[None]:
    """This thread ahead of the machine's other work for a while (tar_stream.ahead)."""
    me = threading.get_native_id()
    was = os.getpriority(os.PRIO_PROCESS, me)
    tar_stream.ahead(me)
    try:
        yield
    finally:
        try:
            os.setpriority(os.PRIO_PROCESS, me, was)
        except OSError:
            pass


def _tar_read(proc: subprocess.Popen[bytes]) -> int:
    """Bytes `proc` has read so far (its /proc io record; 0 once it is gone)."""
    try:
        for line in Path(f"/proc/{proc.pid}/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class ImageStream:
    """Both ends of one transfer, started (and connected) before the source is frozen.

    Why start early: a new SSH session (and the program it runs) costs a tenth of a second or
    more, a new connection a round trip; done in the migration's prepare phase, the ends wait
    (a sender for "go", a receiver for data), so the transfer phase is the bytes alone."""

    def __init__(self, src: Machine, src_dir: Path, dst: Machine, dst_dir: Path, direct: bool = False,
                 stall_s: float = STALL_S) -> None:
        """`direct`: the other machine's end is a TCP stream (direct.py) instead of SSH; `stall_s`:
        seconds without a byte moved after which the path is taken for down (stall.py)."""
        self.src, self.src_dir, self.dst, self.dst_dir = src, src_dir, dst, dst_dir
        self.stall_s = stall_s
        self.sockets: list[socket.socket] = []
        self.reader: subprocess.Popen[bytes] | None = None   # the source's end, on another machine
        self.writer: subprocess.Popen[bytes] | None = None   # the destination's end, on another machine
        self.local_tar: subprocess.Popen[bytes] | None = None  # `tar -x` here, reading the stream itself
        self.src_conn: socket.socket | None = None   # from a direct sender
        self.dst_conn: socket.socket | None = None   # to a direct receiver
        self.token = direct_tcp.new_token()
        self.listener: socket.socket | None = None
        self.dog = Watchdog(self._cut, stall_s, armed=False)   # started now, armed by `run`
        self.closed: ClosedFiles | None = None       # the source's finished files, where it is here
        self.early: _Early | None = None             # the part that runs while CRIU dumps (begin)
        self.landed = 0                              # bytes a direct sender's stream brought here
        try:
            if not src.is_local and direct:
                back = src.peer_address()          # this machine, as the source reaches it
                self.listener = direct_tcp.listen(back)
                self.reader = src.popen(direct_tcp.remote_end("send", str(src_dir)), stdin=subprocess.PIPE)
                assert self.reader.stdin is not None
                self.reader.stdin.write(f"{back} {self.listener.getsockname()[1]} {self.token.hex()}\n".encode())
                self.reader.stdin.close()
                self.src_conn = self._accept(self.reader)
            elif not src.is_local:
                pack = f"read go && exec tar -C {src_dir} --exclude={STATS_DUMP} -cf - ."
                self.reader = src.popen(["sh", "-c", pack], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            if src.is_local and not dst.is_local and direct:
                self.closed = ClosedFiles(str(src_dir))   # before the dump: no file missed
            if dst.is_local:
                dst_dir.mkdir(parents=True, exist_ok=True)
                if self.reader is not None and self.src_conn is None:   # over SSH: a `tar -x` here
                    self.local_tar = subprocess.Popen([*TAR_X, "-C", str(dst_dir)], stdin=self.reader.stdout,
                                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    tar_stream.ahead(self.local_tar.pid)
            elif direct:
                self.writer = dst.popen(direct_tcp.remote_end("recv", str(dst_dir), dst.address),
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                assert self.writer.stdin is not None and self.writer.stdout is not None
                self.writer.stdin.write(self.token.hex().encode() + b"\n")
                self.writer.stdin.close()
                line = self.writer.stdout.readline().strip()
                if not line.isdigit():
                    raise OSError(f"the receiver on machine {dst.name!r} did not start: "
                                  f"{self.abort().strip() or 'no message'}")
                self.dst_conn = direct_tcp.connect(dst.address, int(line), self.token)
                self.sockets.append(self.dst_conn)
            else:
                self.writer = dst.popen(["sh", "-c", f"mkdir -p {dst_dir} && exec {' '.join(TAR_X)} -C {dst_dir}"],
                                        stdin=subprocess.PIPE)
        except (OSError, ValueError) as exc:
            self.abort()
            raise TransferError(f"could not open the image stream: {exc}") from exc

    def _accept(self, sender: subprocess.Popen[bytes]) -> socket.socket:
        """The direct sender's connection; OSError at once when its program ends instead."""
        assert self.listener is not None
        self.listener.settimeout(0.05)
        deadline = time.monotonic() + direct_tcp.ACCEPT_TIMEOUT_S
        while True:
            try:
                conn = direct_tcp.accept(self.listener, self.token)
                self.sockets.append(conn)
                return conn
            except TimeoutError:
                if sender.poll() is not None or time.monotonic() > deadline:
                    raise OSError(f"the sender on machine {self.src.name!r} did not connect: "
                                  f"{self.abort().strip() or 'no message'}") from None

    def begin(self) -> None:
        """Call as the dump starts: over a direct stream, each image leaves as soon as CRIU has
        finished it (ClosedFiles), from a thread, while CRIU writes the next. Why: CRIU closes
        the pages, nearly all of the bytes, half-way through the dump (measured: 82 of 156 ms),
        so most of the transfer need not wait for the dump's end nor add to the downtime."""
        if self.early is not None:
            return
        if self.src.is_local and self.dst_conn is not None and self.closed is not None:
            sender = Sender(self.dst_conn.fileno(), str(self.src_dir), self.dog.touch, late=(FILES_IMG,))
            closed = self.closed
            self.early = _Early(lambda stop: sender.early(closed, stop), sender)
        elif self.dst.is_local and self.src_conn is not None:
            conn = self.src_conn
            self.early = _Early(lambda stop: tar_stream.unpack(conn, str(self.dst_dir), self._landed))
            conn.sendall(GO)

    def _landed(self, n: int) -> None:
        self.landed += n
        self.dog.touch(n)

    def run(self, old_ip: str, new_ip: str) -> TransferReport:
        """Copy the images, with files.img's sockets moved from `old_ip` to `new_ip` (what `begin`
        sent early included). TransferError when the stream breaks (the caller removes what
        reached the destination)."""
        report = TransferReport()
        t0 = time.monotonic()
        tar = self.local_tar
        dog = self.dog
        if tar is not None:
            dog.probe = lambda: _tar_read(tar)
        dog.arm()
        relay = _Relay()
        try:
            if self.src.is_local and not self.dst.is_local:
                with _ahead():             # the sending end is this thread
                    self._send_from_here(report, dog, old_ip, new_ip)
            elif self.dst.is_local and self.src_conn is not None:
                with _ahead():             # the receiving end is this thread
                    self._land_here(report, old_ip, new_ip, dog)
            elif self.local_tar is not None:
                self._land_here(report, old_ip, new_ip)
            else:
                self._relay(report, dog, relay, old_ip, new_ip)
        except Exception as exc:                 # a malformed image too (struct.error): never half-open
            relay.close()
            why = self.abort()
            if dog.stalled:
                raise TransferError(f"the images did not reach machine {self.dst.name!r}: no byte moved "
                                    f"for {self.stall_s:g} s after {dog.moved / 1e6:.1f} MB (the path "
                                    f"between the machines is down?){why}") from exc
            full = (f"; this machine's disk is full where the images land ({self.dst_dir}): free space there"
                    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC else
                    _full_hint(self.dst, self.dst_dir) if NO_SPACE in why else "")
            raise TransferError(f"the images did not reach machine {self.dst.name!r}: {exc}{why}{full}") from exc
        finally:
            t_end = time.monotonic()
            dog.stop(wait=False)
        report.seconds = t_end - t0 - report.rewrite_s
        if report.files == 0:
            raise TransferError(f"no images found in {self.src_dir} on machine {self.src.name!r}")
        return report

    def _send_from_here(self, report: TransferReport, dog: Watchdog, old_ip: str, new_ip: str) -> None:
        """This machine's images to another: files.img rewritten in memory, the rest by sendfile
        (what left early, during the dump, not again unless it changed since)."""
        replace = {}
        files_img = self.src_dir / FILES_IMG
        if files_img.is_file():
            t0 = time.monotonic()
            new, rw = rewrite_files_image(files_img.read_bytes(), old_ip, new_ip)
            report.rewrite_s += time.monotonic() - t0
            report.sockets += rw.sockets
            replace[FILES_IMG] = new
        assert self.writer is not None
        if self.dst_conn is not None:
            fd = self.dst_conn.fileno()
        else:
            assert self.writer.stdin is not None
            fd = self.writer.stdin.fileno()
        try:
            sender = self.early.finish() if self.early is not None else Sender(fd, str(self.src_dir), dog.touch)
            report.early_bytes = sender.early_bytes
            report.bytes, report.files = sender.rest(replace)
        except OSError:
            if not dog.stalled:   # the receiver ended (a full disk?): let its own words arrive
                try:
                    self.writer.wait(timeout=RECEIVER_WORDS_S)
                except subprocess.TimeoutExpired:
                    pass
            raise
        what = f"unpacking the images on machine {self.dst.name!r} ({self.dst_dir})"
        if self.dst_conn is not None:
            self.dst_conn.shutdown(socket.SHUT_WR)
            try:
                said = recv_exact(self.dst_conn, len(DONE) + BUSY.size)
                if said[:len(DONE)] == DONE:   # it wrote everything: all landed
                    if len(said) == len(DONE) + BUSY.size:
                        report.busy_s = BUSY.unpack(said[len(DONE):])[0] / 1e9
                    return
            except OSError:
                if dog.stalled:
                    raise
            _check(self.writer, what, self.dst, self.dst_dir)       # the receiver's own words
            raise TransferError(f"{what}: the receiver ended without saying that it unpacked the "
                                "whole archive")
        if self.writer.stdin is not None:
            self.writer.stdin.close()
        _check(self.writer, what, self.dst, self.dst_dir)

    def _land_here(self, report: TransferReport, old_ip: str, new_ip: str, dog: Watchdog | None = None) -> None:
        """Another machine's images into this one's folder: from a direct sender by this thread
        (tar_stream.unpack), over SSH by the `tar -x` started in prepare; files.img rewritten in
        place there (this copy is the destination's own)."""
        assert self.reader is not None
        if self.src_conn is not None:
            self.begin()
            assert self.early is not None
            report.early_bytes = self.landed
            try:
                self.src_conn.sendall(FIN)
                _, _, said, report.busy_s = self.early.finish()
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise
                raise TransferError(f"unpacking the images on this machine ({self.dst_dir}): {exc}") from exc
            except (EOFError, ValueError, tarfile.TarError) as exc:
                raise TransferError(f"the images from machine {self.src.name!r} arrived incomplete "
                                    f"({exc}){self._sender_words()}") from exc
            if said is None:   # the archive ended, but without the sender's word that all went out
                _check(self.reader, f"packing the images on machine {self.src.name!r} ({self.src_dir})",
                       self.src, self.src_dir)
                raise TransferError(f"the images from machine {self.src.name!r} arrived incomplete: the "
                                    "sender did not say it sent them all")
        else:
            assert self.local_tar is not None and self.reader.stdin is not None
            self.reader.stdin.write(b"go\n")
            self.reader.stdin.close()
            _check(self.local_tar, f"unpacking the images on this machine ({self.dst_dir})", LOCAL, self.dst_dir)
            _check(self.reader, f"packing the images on machine {self.src.name!r} ({self.src_dir})",
                   self.src, self.src_dir)
        for entry in os.scandir(self.dst_dir):   # what landed: the images (the placeholder replaced)
            if entry.is_file(follow_symlinks=False):
                report.bytes += entry.stat(follow_symlinks=False).st_size
                report.files += 1
        files_img = self.dst_dir / FILES_IMG
        if files_img.is_file():
            t0 = time.monotonic()
            new, rw = rewrite_files_image(files_img.read_bytes(), old_ip, new_ip)
            files_img.write_bytes(new)
            report.rewrite_s += time.monotonic() - t0
            report.sockets += rw.sockets

    def _sender_words(self) -> str:
        """What a direct sender on another machine said on stderr, when it ended (briefly waited)."""
        assert self.reader is not None
        try:
            self.reader.wait(timeout=RECEIVER_WORDS_S)
        except subprocess.TimeoutExpired:
            return ""
        err = _available(self.reader.stderr).decode(errors="replace").strip()
        return f" ({self.src.name}: {err})" if err else ""

    def _relay(self, report: TransferReport, dog: Watchdog, relay: _Relay, old_ip: str, new_ip: str) -> None:
        """Between two other machines (or two folders here): through the kit, by tarfile."""
        if self.reader is None:
            members = _local_members(self.src_dir)
        elif self.src_conn is not None:
            self.src_conn.sendall(GO + FIN)
            members = _stream_members(watched(self.src_conn.makefile("rb"), dog, counts=self.writer is None))
        else:
            assert self.reader.stdin is not None and self.reader.stdout is not None
            self.reader.stdin.write(b"go\n")
            self.reader.stdin.close()
            members = _stream_members(watched(self.reader.stdout, dog, counts=self.writer is None))
        sink: IO[bytes] | None = None
        if self.dst_conn is not None:
            sink = watched(self.dst_conn.makefile("wb"), dog)
        elif self.writer is not None:
            assert self.writer.stdin is not None
            sink = watched(self.writer.stdin, dog)
        if sink is not None:
            relay.out_tar = tarfile.open(fileobj=sink, mode="w|", format=tarfile.GNU_FORMAT, bufsize=CHUNK)
        for info, data in members:
            data = _rewritten(info, data, old_ip, new_ip, report)
            name = os.path.basename(info.name)
            if relay.out_tar is not None:
                info.name = name
                relay.out_tar.addfile(info, data)
            else:
                with open(self.dst_dir / name, "wb") as fh:
                    shutil.copyfileobj(data, fh, CHUNK)
                os.chmod(self.dst_dir / name, info.mode)
            report.bytes += info.size
            report.files += 1
        if relay.out_tar is not None and sink is not None and self.writer is not None:
            relay.out_tar.close()
            sink.close()
            if self.dst_conn is not None:
                self.dst_conn.shutdown(socket.SHUT_WR)
            _check(self.writer, f"unpacking the images on machine {self.dst.name!r} ({self.dst_dir})",
                   self.dst, self.dst_dir)
        if self.reader is not None:
            _check(self.reader, f"packing the images on machine {self.src.name!r} ({self.src_dir})",
                   self.src, self.src_dir)

    def _end_early(self) -> None:
        if self.early is not None:
            self.early.end(timeout=RECEIVER_WORDS_S)
        if self.closed is not None:
            self.closed.close()
            self.closed = None

    def _cut(self) -> None:
        """The watchdog's act (another thread): end both ends so the blocked read or write fails."""
        for proc in (self.writer, self.reader, self.local_tar):
            if proc is not None and proc.poll() is None:
                proc.kill()
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """After `run`: collect the other machine's ends (their SSH sessions end moments after they
        said the images are complete), and close the connections."""
        self.dog.stop()
        self._end_early()
        for proc in (self.writer, self.reader, self.local_tar):
            if proc is None:
                continue
            try:
                proc.wait(timeout=CLOSE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        if self.listener is not None:
            self.listener.close()
        for sock in self.sockets:
            sock.close()

    def abort(self) -> str:
        """End both ends (rollback); returns what they said on stderr, for the error."""
        self.dog.stop(wait=False)
        for sock in self.sockets:   # a thread of `begin` blocked on one fails at once
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._end_early()
        if self.listener is not None:
            self.listener.close()
        why = ""
        for proc, where in ((self.writer, self.dst.name), (self.local_tar, self.dst.name),
                            (self.reader, self.src.name)):
            if proc is None:
                continue
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            err = _available(proc.stderr).decode(errors="replace").strip()
            if err:
                why += f" ({where}: {err})"
        for sock in self.sockets:
            sock.close()
        return why


class _Early:
    """A thread that runs `work(stop)` (the early part of a transfer) until told to stop: `stop`
    is a descriptor that becomes readable then (a pipe's end of ours; the receiving end ignores
    it, its sender's FIN ends it)."""

    def __init__(self, work: Callable[[int], Any], result: Any = None) -> None:
        self.work, self.result = work, result
        self.error: BaseException | None = None
        self.tid = 0
        self.cpus = os.sched_getaffinity(0)   # the migration's own CPUs, for what is left after
        self.stop_r, self.stop_w = os.pipe()
        self.thread = threading.Thread(target=self._run, name="p4cf-transfer-early", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.tid = threading.get_native_id()
        tar_stream.behind()    # while CRIU dumps, only on CPU time nothing else wants
        try:
            out = self.work(self.stop_r)
            if self.result is None:
                self.result = out
        except BaseException as exc:   # handed to `finish`, in the migration's thread
            self.error = exc

    def finish(self, timeout: float | None = None) -> Any:
        """Stop it, wait for it, and return its result (or raise its error); a receiving thread
        goes on with what is left at the transfer's priority, on the migration's CPUs."""
        if self.tid and self.thread.is_alive():
            tar_stream.forward(self.tid, self.cpus)
        self.end(timeout)
        if self.error is not None:
            raise self.error
        return self.result

    def end(self, timeout: float | None = None) -> None:
        if self.stop_w >= 0:
            os.write(self.stop_w, b"x")
        self.thread.join(timeout)
        if not self.thread.is_alive():
            for fd in (self.stop_r, self.stop_w):
                if fd >= 0:
                    os.close(fd)
            self.stop_r = self.stop_w = -1


class _Relay:
    """The relay's output archive, closed on failure so its finaliser does not write to the
    broken stream again."""

    def __init__(self) -> None:
        self.out_tar: tarfile.TarFile | None = None

    def close(self) -> None:
        if self.out_tar is not None:
            try:
                self.out_tar.close()
            except (OSError, ValueError, tarfile.TarError):
                pass


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
