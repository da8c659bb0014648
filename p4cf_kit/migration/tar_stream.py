"""The image stream's ends: a tar stream sent with sendfile, received by splicing it into files.

Why this way: the images should cost the CPU as little as the wire does. The sender writes
the tar headers itself and hands each file's bytes to the kernel (`os.sendfile`: no copy
through Python); the receiver reads each header and splices the file's bytes from the
connection through a pipe into the landing folder (`unpack`: no copy through a process's
memory, no fsync: the restore reads the page cache). On
another machine this file runs as `python3 -c` with its own text (standard library only,
nothing of the kit installed there, Python >= 3.10 for `os.splice`): `recv FOLDER HOST`
listens, takes one connection that starts with the transfer's token (read from stdin) and
unpacks it; `send FOLDER`
connects to "HOST PORT TOKEN" (from stdin), sends the token and waits for the kit's GO
byte on the same connection. Both are started, and connected, during the migration's prepare
phase, so the downtime holds the bytes alone.

Why the images leave during the dump: CRIU finishes the pages, nearly all of the bytes, half
way through the dump (in a migration here: pages-1.img closed 82 ms into a 156 ms checkpoint
phase; the rest is namespaces, mounts, sockets). The kit sends GO as the dump starts; from
then on the sender sends each file as soon as its writer closes it (ClosedFiles: inotify), and
on the kit's FIN (the dump ended) everything that did not leave yet, or changed since it left
(sent again; the receiver overwrites). So at 10 Gbit/s nearly all of the transfer, at 1 Gbit/s
most of it, is off the downtime.

How the kit learns that the images are complete at the other end, without waiting for the
SSH session's exit status (which crosses sshd, the control master and the ssh client: 10-20 ms
after `tar` exited, measured in migrations at 10 Gbit/s): the receiver answers on the same
connection with one DONE byte once it unpacked the whole archive, then its busy time (BUSY:
the time it took in files' bytes, the stream's rate while it moved), and resets the connection
when it failed, so the kit's send fails at once; the sender ends its archive with one more
member, SENT, holding "FILES BYTES", written only after every file went out (GNU tar takes an
archive cut at a member's boundary for whole, so the receiving end needs this word to tell the
two apart).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import select
import socket
import struct
import sys
import tarfile
import time
from collections.abc import Callable, Iterable

PIECE = 256 << 10      # sendfile and write pieces: progress shows on a slow link (2 s at 1 Mbit/s)
BLOCK = 512            # tar's block: every member is padded to it
GO = b"g"              # the kit's word to a waiting sender that the dump has started
FIN = b"f"             # and that it has ended: what is left goes now
STATS_DUMP = "stats-dump"   # CRIU's dump statistics: written late, not needed by the restore
WAIT_S = 600.0         # a sender waits this long for "go", then gives up (the kit is gone)
TAR_X = ["tar", "-B", "-b", "2048", "-xf", "-"]   # 1 MiB reads, each filled before it is unpacked
DONE = b"\x00"         # the receiver's word that it unpacked the whole archive (then BUSY)
BUSY = struct.Struct("!Q")  # after DONE: nanoseconds the receiver spent taking in files' bytes
PIPE_SIZE_CMD = 1031   # fcntl's F_SETPIPE_SZ (Linux; named in Python's fcntl only from 3.10 on)
SENT = ".p4cf-sent"    # the sender's last member: "FILES BYTES" of the images before it
TRANSFER_NICE = -10    # both ends' CPU priority (see ahead); P4CF_TRANSFER_NICE=0 leaves it
NICE_ENV = "P4CF_TRANSFER_NICE"


def _write_all(fd: int, data: bytes | memoryview, progress: Callable[[int], None] | None = None) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view[:PIECE])
        view = view[n:]
        if progress is not None:
            progress(n)


def _member(fd: int, name: str, data: bytes, mode: int, mtime: int,
            progress: Callable[[int], None] | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, mtime
    _write_all(fd, info.tobuf(tarfile.GNU_FORMAT))
    _write_all(fd, data, progress)
    if info.size % BLOCK:
        _write_all(fd, bytes(BLOCK - info.size % BLOCK))


class ClosedFiles:
    """The files a writer has finished in one folder, as it closes them (inotify's
    IN_CLOSE_WRITE), so they can leave while CRIU still writes others.

    Why inotify, through libc by ctypes: this file also runs on the other machine with nothing
    but Python's standard library, which has no inotify of its own. The folder may not exist
    yet (Podman creates a checkpoint's folder when the dump starts, measured 44 ms into it),
    so its parent is watched for it. Where inotify is missing, `fd` is -1 and nothing leaves
    early: the whole folder goes at the end, as before."""

    CLOSE_WRITE, MOVED_TO, CREATE, ONLYDIR = 0x8, 0x80, 0x100, 0x01000000
    EVENT = struct.Struct("iIII")   # wd, mask, cookie, len; then the name, NUL-padded to len

    def __init__(self, folder: str) -> None:
        self.folder, self.name = folder, os.path.basename(folder)
        self.fd = self.wd = self.parent = -1
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self._add = libc.inotify_add_watch
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError):
            return
        if fd < 0:
            return
        self.fd = fd
        self.parent = self._watch(os.path.dirname(folder), self.CREATE | self.MOVED_TO | self.ONLYDIR)
        self.wd = self._watch(folder, self.CLOSE_WRITE | self.ONLYDIR)   # -1 until it exists

    def _watch(self, path: str, mask: int) -> int:
        return int(self._add(self.fd, os.fsencode(path), mask))

    def take(self) -> list[str]:
        """The names closed since the last call (the folder watched from its creation on)."""
        names: list[str] = []
        try:
            buf = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return names
        i = 0
        while i + self.EVENT.size <= len(buf):
            wd, mask, _, size = self.EVENT.unpack_from(buf, i)
            name = buf[i + self.EVENT.size:i + self.EVENT.size + size].rstrip(b"\0").decode(errors="surrogateescape")
            i += self.EVENT.size + size
            if wd == self.parent and name == self.name:      # (re)created: watch the new one
                self.wd = self._watch(self.folder, self.CLOSE_WRITE | self.ONLYDIR)
            elif wd == self.wd and wd >= 0 and mask & self.CLOSE_WRITE and name:
                names.append(name)
        return names

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Sender:
    """One tar stream of a folder's regular files (not stats-dump) to the blocking descriptor
    `fd` (a socket or a pipe): `early` sends each file as soon as it is finished, `rest` all
    that did not leave yet, or changed since (sent again: the receiver overwrites), then the
    archive's end. `late` names files that leave only in `rest` (files.img, rewritten there)."""

    def __init__(self, fd: int, folder: str, progress: Callable[[int], None] | None = None,
                 late: Iterable[str] = ()) -> None:
        self.fd, self.folder, self.progress = fd, folder, progress
        self.late = {STATS_DUMP, *late}
        self.sent: dict[str, tuple[int, int, int]] = {}   # name -> (inode, size, mtime) as sent
        self.bytes = self.files = 0
        self.early_bytes = 0

    def _file(self, name: str) -> None:
        path = os.path.join(self.folder, name)
        try:
            fh = open(path, "rb")
        except FileNotFoundError:        # gone again: `rest` sends what is there at the end
            return
        with fh:
            st = os.fstat(fh.fileno())
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = st.st_size, st.st_mode & 0o7777, int(st.st_mtime)
            _write_all(self.fd, info.tobuf(tarfile.GNU_FORMAT))
            offset = 0
            while offset < info.size:
                n = os.sendfile(self.fd, fh.fileno(), offset, min(PIECE, info.size - offset))
                if n == 0:
                    raise OSError(f"{path} shrank while it was sent")
                offset += n
                if self.progress is not None:
                    self.progress(n)
            if info.size % BLOCK:
                _write_all(self.fd, bytes(BLOCK - info.size % BLOCK))
        self.sent[name] = (st.st_ino, st.st_size, st.st_mtime_ns)
        self.bytes += st.st_size
        self.files += 1

    def early(self, closed: ClosedFiles, stop: int) -> None:
        """Send files as `closed` reports them finished, until descriptor `stop` is readable."""
        watched = [stop] + ([closed.fd] if closed.fd >= 0 else [])
        while True:
            ready = select.select(watched, [], [])[0]
            if closed.fd in ready:
                for name in closed.take():
                    if name not in self.late and os.path.isfile(os.path.join(self.folder, name)):
                        self._file(name)
            if stop in ready:
                self.early_bytes = self.bytes
                return

    def rest(self, replace: dict[str, bytes] | None = None, sent: bool = False) -> tuple[int, int]:
        """Everything not sent yet (`replace` gives some files' content instead of the disk's),
        with the SENT member when `sent`, and the archive's end. Returns (bytes, files) sent in
        all, early ones included."""
        for entry in sorted(os.scandir(self.folder), key=lambda e: e.name):
            if entry.name == STATS_DUMP or not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
            data = (replace or {}).get(entry.name)
            if data is not None:
                _member(self.fd, entry.name, data, st.st_mode & 0o7777, int(st.st_mtime), self.progress)
                self.bytes += len(data)
                self.files += 1
            elif self.sent.get(entry.name) != (st.st_ino, st.st_size, st.st_mtime_ns):
                self._file(entry.name)
        if sent:
            _member(self.fd, SENT, f"{self.files} {self.bytes}\n".encode(), 0o600, 0)
        _write_all(self.fd, bytes(2 * BLOCK))   # the end of the archive
        return self.bytes, self.files


def send_tar(fd: int, folder: str, replace: dict[str, bytes] | None = None,
             progress: Callable[[int], None] | None = None, sent: bool = False) -> tuple[int, int]:
    """Write the regular files of `folder` (not stats-dump) as a tar stream to the blocking
    descriptor `fd` (a socket or a pipe); `replace` gives some files' content instead of the
    disk's; `sent`: end with the SENT member. Returns (bytes of the files, files)."""
    return Sender(fd, folder, progress).rest(replace, sent)


def parse_sent(text: str) -> tuple[int, int] | None:
    """(files, bytes) from a SENT member's text; None when it is not one."""
    parts = text.split()
    return (int(parts[0]), int(parts[1])) if len(parts) == 2 and all(p.isdigit() for p in parts) else None


def recv_exact(conn: socket.socket, n: int) -> bytes:
    """Exactly `n` bytes (fewer only when the peer closed): nothing read past them."""
    got = b""
    while len(got) < n:
        part = conn.recv(n - len(got))
        if not part:
            break
        got += part
    return got


def _header(conn: socket.socket) -> bytes:
    block = recv_exact(conn, BLOCK)
    if len(block) < BLOCK:
        raise EOFError("the stream ended before the archive's end")
    return block


def unpack(conn: socket.socket, folder: str, progress: Callable[[int], None] | None = None,
           ) -> tuple[int, int, tuple[int, int] | None, float]:
    """Unpack the tar stream of regular files on the blocking socket `conn` into `folder`, each
    file's bytes spliced from the socket through a pipe into the file (no copy through a
    process's memory: half the CPU of GNU tar's read and write, which on a 2-core machine is in
    the transfer's path). Stops at the archive's end; returns (files, bytes, the SENT member's
    word or None, busy seconds: from each file's header to its last byte, summed, so the waits
    for a sender that waits for CRIU's next file are not counted). EOFError when the stream
    ends before the archive does, ValueError on a member that is not a plain file name, OSError
    from the disk (a full one among them)."""
    fd = conn.fileno()
    pipe_r, pipe_w = os.pipe()
    try:
        fcntl.fcntl(pipe_w, PIPE_SIZE_CMD, PIECE)
    except OSError:        # a smaller pipe only means more calls
        pass
    files = total = 0
    busy = 0.0
    sent = None
    try:
        while True:
            head = _header(conn)
            t_head = time.monotonic()
            if not any(head):   # the end of the archive: a second zero block follows
                _header(conn)
                return files, total, sent, busy
            info = tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
            name = info.name
            if not info.isreg() or not name or "/" in name or name in (".", ".."):
                raise ValueError(f"member {name!r} of the stream is not an image file")
            if name == SENT:
                sent = parse_sent(recv_exact(conn, info.size).decode(errors="replace"))
            else:
                out = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    left = info.size
                    while left:
                        n = os.splice(fd, pipe_w, min(left, PIECE))
                        if n == 0:
                            raise EOFError(f"the stream ended in the middle of {name}")
                        left -= n
                        if progress is not None:
                            progress(n)
                        while n:
                            n -= os.splice(pipe_r, out, n)
                    os.fchmod(out, info.mode & 0o7777)
                finally:
                    os.close(out)
                busy += time.monotonic() - t_head
                files += 1
                total += info.size
            if info.size % BLOCK:
                recv_exact(conn, BLOCK - info.size % BLOCK)
    finally:
        os.close(pipe_r)
        os.close(pipe_w)


def transfer_nice() -> int:
    """The nice value of the transfer's ends: P4CF_TRANSFER_NICE, TRANSFER_NICE by default."""
    value = os.environ.get(NICE_ENV, "").strip()
    return int(value) if value.lstrip("-").isdigit() else TRANSFER_NICE


def ahead(pid: int = 0, nice: int | None = None) -> None:
    """Give process (or thread) `pid` (0: this one, and what it starts) the transfer's nice value,
    so it takes a CPU ahead of the machine's other work at normal priority; left as it is where
    that is not allowed (no root there) or the value is 0."""
    nice = transfer_nice() if nice is None else nice
    if nice:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, nice)
        except OSError:
            pass


def behind(tid: int = 0) -> None:
    """Thread `tid` (0: this one) runs only on CPU time nothing else wants (SCHED_IDLE), on any
    CPU: the part of a transfer that overlaps the dump, which at 10 Gbit/s would otherwise take
    CRIU's CPU (measured: checkpoint phase +16 ms at nice -10 on the kit's CPU). Left as it is
    where that is not allowed."""
    try:
        os.sched_setaffinity(tid, range(os.cpu_count() or 1))
    except (OSError, ValueError):
        pass
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        pass


def forward(tid: int = 0, cpus: set[int] | None = None) -> None:
    """Thread `tid` back from `behind`: normal scheduling at the transfer's nice (`ahead`), on
    `cpus` when given: the dump is over, what is left of the transfer is in the downtime."""
    try:
        os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        if cpus:
            os.sched_setaffinity(tid, cpus)
    except (OSError, AttributeError):
        pass
    ahead(tid)


def _receive(folder: str, host: str) -> None:
    token = bytes.fromhex(sys.stdin.readline().strip())
    srv = socket.socket()
    srv.bind((host, 0))
    srv.listen(1)
    srv.settimeout(60)
    print(srv.getsockname()[1], flush=True)
    conn, _ = srv.accept()
    srv.close()
    conn.settimeout(60)
    if recv_exact(conn, len(token)) != token:
        sys.exit("wrong token: not the kit's stream")
    conn.setblocking(True)
    try:
        os.makedirs(folder, exist_ok=True)
        busy = unpack(conn, folder)[3]
    except (OSError, EOFError, ValueError, tarfile.TarError) as exc:
        print(f"unpacking into {folder}: {exc}", file=sys.stderr, flush=True)
        conn.close()                # unread bytes make this a reset: the kit's send fails at once
        os._exit(2)
    while conn.recv(1 << 16):       # the sender's shutdown: nothing unread, so no reset eats DONE
        pass
    conn.sendall(DONE + BUSY.pack(int(busy * 1e9)))
    os._exit(0)


def _send(folder: str) -> None:
    closed = ClosedFiles(folder)    # before the dump starts: its first file is not missed
    host, port, token = sys.stdin.readline().split()
    conn = socket.create_connection((host, int(port)), timeout=60)
    conn.sendall(bytes.fromhex(token))
    conn.settimeout(WAIT_S)
    if conn.recv(1) != GO:
        sys.exit("called off")
    conn.setblocking(True)
    sender = Sender(conn.fileno(), folder)
    cpus = os.sched_getaffinity(0)
    behind()
    sender.early(closed, conn.fileno())   # the files CRIU finishes, until the kit's FIN
    closed.close()
    if conn.recv(1) != FIN:
        sys.exit("called off")
    forward(0, cpus)
    sender.rest(sent=True)
    conn.shutdown(socket.SHUT_WR)
    os._exit(0)   # at once: the kit waits for this exit, not for the interpreter's tidying up


if __name__ == "__main__":   # on the other machine: python3 -c TEXT recv|send NICE FOLDER [HOST]
    ahead(0, int(sys.argv[2]))
    if sys.argv[1] == "recv":
        _receive(sys.argv[3], sys.argv[4])
    else:
        _send(sys.argv[3])
