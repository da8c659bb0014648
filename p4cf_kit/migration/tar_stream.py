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
connects to "HOST PORT TOKEN" (from stdin), sends the token and waits for the kit's "go"
byte on the same connection, then sends the folder. Both are started, and connected, during
the migration's prepare phase, so the downtime holds the bytes alone.

How the kit learns that the images are complete at the other end, without waiting for the
SSH session's exit status (which crosses sshd, the control master and the ssh client: 10-20 ms
after `tar` exited, measured in migrations at 10 Gbit/s): the receiver answers on the same
connection with one DONE byte once its `tar` exited 0 (and resets it when `tar` failed, so the
kit's send fails at once); the sender ends its archive with one more member, SENT, holding
"FILES BYTES", written only after every file went out (GNU tar takes an archive cut at a
member's boundary for whole, so the receiving end needs this word to tell the two apart).
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import tarfile
from collections.abc import Callable

PIECE = 256 << 10      # sendfile and write pieces: progress shows on a slow link (2 s at 1 Mbit/s)
BLOCK = 512            # tar's block: every member is padded to it
GO = b"g"              # the kit's word to a waiting sender that the images are written
STATS_DUMP = "stats-dump"   # CRIU's dump statistics: written late, not needed by the restore
WAIT_S = 600.0         # a sender waits this long for "go", then gives up (the kit is gone)
TAR_X = ["tar", "-B", "-b", "2048", "-xf", "-"]   # 1 MiB reads, each filled before it is unpacked
DONE = b"\x00"         # the receiver's word that it unpacked the whole archive
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


def send_tar(fd: int, folder: str, replace: dict[str, bytes] | None = None,
             progress: Callable[[int], None] | None = None, sent: bool = False) -> tuple[int, int]:
    """Write the regular files of `folder` (not stats-dump) as a tar stream to the blocking
    descriptor `fd` (a socket or a pipe); `replace` gives some files' content instead of the
    disk's; `sent`: end with the SENT member. Returns (bytes of the files, files)."""
    total = files = 0
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name == STATS_DUMP or not entry.is_file(follow_symlinks=False):
            continue
        st = entry.stat(follow_symlinks=False)
        data = (replace or {}).get(entry.name)
        if data is not None:
            _member(fd, entry.name, data, st.st_mode & 0o7777, int(st.st_mtime), progress)
        else:
            info = tarfile.TarInfo(entry.name)
            info.size, info.mode, info.mtime = st.st_size, st.st_mode & 0o7777, int(st.st_mtime)
            _write_all(fd, info.tobuf(tarfile.GNU_FORMAT))
            with open(entry.path, "rb") as fh:
                offset = 0
                while offset < info.size:
                    n = os.sendfile(fd, fh.fileno(), offset, min(PIECE, info.size - offset))
                    if n == 0:
                        raise OSError(f"{entry.path} shrank while it was sent")
                    offset += n
                    if progress is not None:
                        progress(n)
            if info.size % BLOCK:
                _write_all(fd, bytes(BLOCK - info.size % BLOCK))
        total += len(data) if data is not None else st.st_size
        files += 1
    if sent:
        _member(fd, SENT, f"{files} {total}\n".encode(), 0o600, 0)
    _write_all(fd, bytes(2 * BLOCK))   # the end of the archive
    return total, files


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
           ) -> tuple[int, int, tuple[int, int] | None]:
    """Unpack the tar stream of regular files on the blocking socket `conn` into `folder`, each
    file's bytes spliced from the socket through a pipe into the file (no copy through a
    process's memory: half the CPU of GNU tar's read and write, which on a 2-core machine is in
    the transfer's path). Stops at the archive's end; returns (files, bytes, the SENT member's
    word or None). EOFError when the stream ends before the archive does, ValueError on a
    member that is not a plain file name, OSError from the disk (a full one among them)."""
    fd = conn.fileno()
    pipe_r, pipe_w = os.pipe()
    try:
        fcntl.fcntl(pipe_w, PIPE_SIZE_CMD, PIECE)
    except OSError:        # a smaller pipe only means more calls
        pass
    files = total = 0
    sent = None
    try:
        while True:
            head = _header(conn)
            if not any(head):   # the end of the archive: a second zero block follows
                _header(conn)
                return files, total, sent
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
        unpack(conn, folder)
    except (OSError, EOFError, ValueError, tarfile.TarError) as exc:
        print(f"unpacking into {folder}: {exc}", file=sys.stderr, flush=True)
        conn.close()                # unread bytes make this a reset: the kit's send fails at once
        os._exit(2)
    while conn.recv(1 << 16):       # the sender's shutdown: nothing unread, so no reset eats DONE
        pass
    conn.sendall(DONE)
    os._exit(0)


def _send(folder: str) -> None:
    host, port, token = sys.stdin.readline().split()
    conn = socket.create_connection((host, int(port)), timeout=60)
    conn.sendall(bytes.fromhex(token))
    conn.settimeout(WAIT_S)
    if conn.recv(1) != GO:
        sys.exit("called off")
    conn.setblocking(True)
    send_tar(conn.fileno(), folder, sent=True)
    conn.shutdown(socket.SHUT_WR)
    os._exit(0)   # at once: the kit waits for this exit, not for the interpreter's tidying up


if __name__ == "__main__":   # on the other machine: python3 -c TEXT recv|send NICE FOLDER [HOST]
    ahead(0, int(sys.argv[2]))
    if sys.argv[1] == "recv":
        _receive(sys.argv[3], sys.argv[4])
    else:
        _send(sys.argv[3])
