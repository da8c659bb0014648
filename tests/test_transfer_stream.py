"""The image stream's ends (migration/tar_stream.py) on loopback: what lands is what was sent.

Real processes, real sockets, real GNU tar; no machine or namespace: the two-machine cases
(cuts, a full disk, a machine gone) are in test_machines.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from p4cf_kit.migration import direct
from p4cf_kit.migration.stall import Watchdog
from p4cf_kit.migration.tar_stream import (
    DONE,
    FIN,
    GO,
    SENT,
    STATS_DUMP,
    TAR_X,
    ClosedFiles,
    Sender,
    parse_sent,
    recv_exact,
    send_tar,
    unpack,
)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A folder shaped like a checkpoint: a large pages file, small ones, stats-dump."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "pages-1.img").write_bytes(os.urandom(3_000_001))   # not a multiple of tar's block
    for i in range(5):
        (src / f"core-{i}.img").write_bytes(os.urandom(100 + i))
    (src / "files.img").write_bytes(b"old")
    (src / "inventory.img").write_bytes(b"")
    (src / STATS_DUMP).write_bytes(b"written late")
    os.chmod(src / "core-0.img", 0o600)
    return src


def _same(src: Path, dst: Path, files_img: bytes = b"old") -> None:
    sent = sorted(p.name for p in src.iterdir() if p.name != STATS_DUMP)
    assert sorted(p.name for p in dst.iterdir()) == sent
    for name in sent:
        want = files_img if name == "files.img" else (src / name).read_bytes()
        assert (dst / name).read_bytes() == want, name
    assert (dst / "core-0.img").stat().st_mode & 0o777 == 0o600


def _receiving_tar(tmp_path: Path) -> tuple[Path, socket.socket, subprocess.Popen[bytes]]:
    """A `tar -x` into a fresh folder reading one end of a socket pair; the other end to write."""
    dst = tmp_path / "dst"
    dst.mkdir()
    a, b = socket.socketpair()
    tar = subprocess.Popen([*TAR_X, "-C", str(dst)], stdin=b.fileno(), stderr=subprocess.PIPE)
    b.close()
    return dst, a, tar


def test_send_tar_into_tar_x_lands_the_folder(images: Path, tmp_path: Path) -> None:
    dst, a, tar = _receiving_tar(tmp_path)
    moved: list[int] = []
    total, files = send_tar(a.fileno(), str(images), {"files.img": b"rewritten"}, moved.append)
    a.shutdown(socket.SHUT_WR)
    assert tar.wait(timeout=30) == 0, tar.stderr.read() if tar.stderr else ""
    a.close()
    assert files == 8 and total == 3_000_001 + sum(100 + i for i in range(5)) + len(b"rewritten")
    assert sum(moved) == total          # the watchdog hears of every byte
    _same(images, dst, b"rewritten")


def test_a_stream_cut_midway_fails_the_receiving_tar(images: Path, tmp_path: Path) -> None:
    dst, a, tar = _receiving_tar(tmp_path)
    r, w = os.pipe()

    def send() -> None:
        try:
            send_tar(w, str(images))
        except OSError:     # its reader is gone: the point
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    part = b""
    while len(part) < 100_000:           # inside pages-1.img: the small files come first
        part += os.read(r, 100_000 - len(part))
    a.sendall(part)                      # part of the stream, then the sender's machine is gone
    a.close()
    assert tar.wait(timeout=30) != 0
    os.close(r)
    sender.join(timeout=5)
    os.close(w)


def test_the_remote_receiver_takes_only_its_token_and_says_when_tar_is_done(images: Path,
                                                                           tmp_path: Path) -> None:
    """`recv` as another machine runs it (python3 -c with the file's text), on loopback: DONE on
    the connection once its tar unpacked everything (before its own exit, which SSH relays late)."""
    dst = tmp_path / "landing" / "checkpoint"
    token = direct.new_token()
    proc = subprocess.Popen([sys.executable, *direct.remote_end("recv", str(dst), "127.0.0.1")[1:]],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(token.hex().encode() + b"\n")
    proc.stdin.close()
    conn = direct.connect("127.0.0.1", int(proc.stdout.readline()), token)
    send_tar(conn.fileno(), str(images), {"files.img": b"new"})
    conn.shutdown(socket.SHUT_WR)
    assert recv_exact(conn, 1) == DONE
    _same(images, dst, b"new")                 # complete when DONE arrives
    assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    conn.close()

    wrong = subprocess.Popen([sys.executable, *direct.remote_end("recv", str(dst), "127.0.0.1")[1:]],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wrong.stdin is not None and wrong.stdout is not None
    wrong.stdin.write(token.hex().encode() + b"\n")
    wrong.stdin.close()
    with socket.create_connection(("127.0.0.1", int(wrong.stdout.readline()))) as other:
        other.sendall(bytes(len(token)))
        assert wrong.wait(timeout=30) != 0
    assert wrong.stderr is not None and b"wrong token" in wrong.stderr.read()


def test_a_remote_receiver_that_cannot_write_resets_the_connection_and_says_why(tmp_path: Path) -> None:
    """Its folder cannot be made (as a full disk or a crash ends it): no DONE, the sender's
    writes fail at once instead of filling buffers nobody reads, and stderr says why."""
    (tmp_path / "file").write_text("not a folder")
    dst = tmp_path / "file" / "landing"
    token = direct.new_token()
    proc = subprocess.Popen([sys.executable, *direct.remote_end("recv", str(dst), "127.0.0.1")[1:]],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(token.hex().encode() + b"\n")
    proc.stdin.close()
    conn = direct.connect("127.0.0.1", int(proc.stdout.readline()), token)
    with pytest.raises(OSError):
        for _ in range(64):      # 64 MiB: far beyond what the socket buffers hold
            conn.sendall(bytes(1 << 20))
    assert proc.wait(timeout=30) == 2
    assert str(dst) in proc.stderr.read().decode()
    conn.close()


def _feed(data: bytes) -> socket.socket:
    """The receiving end of a stream of `data` that then ends (a sender thread: more than the
    socket buffers hold)."""
    a, b = socket.socketpair()

    def send() -> None:
        try:
            a.sendall(data)
            a.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    threading.Thread(target=send, daemon=True).start()
    return b


def test_unpack_refuses_a_stream_cut_short_and_a_member_with_a_path(images: Path, tmp_path: Path) -> None:
    """What the receiving ends (there, and here from a direct sender) take: plain files only, and
    a stream that ends before the archive's end is an error, never a short file taken for whole."""
    whole = tmp_path / "whole.tar"
    with open(whole, "wb") as fh:
        send_tar(fh.fileno(), str(images), sent=True)
    data = whole.read_bytes()
    dst = tmp_path / "dst"
    dst.mkdir()
    for cut in (len(data) // 2, data.index(SENT.encode()) // 512 * 512):   # in a file; at a member's end
        conn = _feed(data[:cut])
        with pytest.raises(EOFError):
            unpack(conn, str(dst))
        conn.close()
    evil = tarfile.TarInfo("../escape.img")
    evil.size = 3
    conn = _feed(evil.tobuf(tarfile.GNU_FORMAT) + b"abc".ljust(512, b"\0") + bytes(1024))
    with pytest.raises(ValueError):
        unpack(conn, str(dst))
    conn.close()
    assert not (tmp_path / "escape.img").exists()


def _remote_sender(folder: Path) -> tuple[subprocess.Popen[bytes], socket.socket, socket.socket]:
    """`send FOLDER` as another machine runs it (python3 -c with the file's text), connected back
    to a listener here on loopback: the process, the listener and its accepted connection."""
    token = direct.new_token()
    listener = direct.listen("127.0.0.1")
    proc = subprocess.Popen([sys.executable, *direct.remote_end("send", str(folder))[1:]],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(f"127.0.0.1 {listener.getsockname()[1]} {token.hex()}\n".encode())
    proc.stdin.close()
    return proc, listener, direct.accept(listener, token)


def test_the_remote_sender_waits_for_go_on_its_connection(images: Path, tmp_path: Path) -> None:
    """`send` as another machine runs it: connects back, sends the token, waits for "go" (the
    dump started) and "fin" (it ended: files written before "go" leave now); its archive ends
    with the SENT member (files and bytes), its word that every file went out."""
    dst = tmp_path / "dst"
    dst.mkdir()
    proc, listener, conn = _remote_sender(images)
    conn.settimeout(0.3)
    with pytest.raises(TimeoutError):                          # nothing before "go"
        conn.recv(1)
    conn.setblocking(True)
    assert proc.poll() is None
    conn.sendall(GO)
    conn.settimeout(0.3)
    with pytest.raises(TimeoutError):                          # nothing closed since "go"
        conn.recv(1)
    conn.setblocking(True)
    conn.sendall(FIN)
    moved: list[int] = []
    files, total, said, busy = unpack(conn, str(dst), moved.append)
    assert proc.wait(timeout=30) == 0
    conn.close()
    listener.close()
    sent = sorted(p for p in images.iterdir() if p.name != STATS_DUMP)
    assert said == (files, total) == (len(sent), sum(p.stat().st_size for p in sent))
    assert sum(moved) == (images / "pages-1.img").stat().st_size + sum(100 + i for i in range(5)) + 3
    _same(images, dst)


def test_an_archive_cut_at_a_members_end_has_no_sent_word(images: Path, tmp_path: Path) -> None:
    """GNU tar unpacks an archive cut between members and exits 0: only SENT tells them apart."""
    whole = tmp_path / "whole.tar"
    with open(whole, "wb") as fh:
        send_tar(fh.fileno(), str(images), sent=True)
    data = whole.read_bytes()
    cut = data[:data.index(SENT.encode()) - 0]      # up to the SENT member's header
    cut = cut[:len(cut) - len(cut) % 512]
    dst = tmp_path / "dst"
    dst.mkdir()
    assert subprocess.run([*TAR_X, "-C", str(dst)], input=cut).returncode == 0
    assert (dst / "pages-1.img").stat().st_size == 3_000_001 and not (dst / SENT).exists()
    assert parse_sent("not a word") is None


def test_the_watchdog_counts_a_probe_that_grows_and_cuts_one_that_stops() -> None:
    seen = {"n": 0}
    cuts: list[float] = []

    def grow() -> int:
        seen["n"] += 1000
        return seen["n"]

    dog = Watchdog(lambda: cuts.append(time.monotonic()), stall_s=0.4, probe=grow)
    time.sleep(1.2)
    dog.stop()
    assert not cuts and dog.moved > 0
    t0 = time.monotonic()
    dog = Watchdog(lambda: cuts.append(time.monotonic()), stall_s=0.4, probe=lambda: 5)
    time.sleep(1.2)
    dog.stop()
    assert dog.stalled and len(cuts) == 1 and cuts[0] - t0 < 1.0


def test_a_watchdog_started_unarmed_watches_only_once_armed() -> None:
    """The transfer starts its watchdog in prepare (a thread's start waits for the thread to
    run) and arms it when the bytes start: no cut while unarmed, however long."""
    cuts: list[float] = []
    dog = Watchdog(lambda: cuts.append(time.monotonic()), stall_s=0.2, armed=False)
    time.sleep(0.6)
    assert not cuts and not dog.stalled
    dog.arm()
    time.sleep(0.6)
    dog.stop()
    assert dog.stalled and len(cuts) == 1


def test_the_ends_run_at_the_transfers_cpu_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    """`ahead` gives a process the transfer's nice value (P4CF_TRANSFER_NICE; 0 leaves it)."""
    from p4cf_kit.migration import tar_stream
    proc = subprocess.Popen(["sleep", "5"])
    try:
        monkeypatch.setenv(tar_stream.NICE_ENV, "0")
        tar_stream.ahead(proc.pid)
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == os.getpriority(os.PRIO_PROCESS, 0)
        monkeypatch.setenv(tar_stream.NICE_ENV, "-5")
        tar_stream.ahead(proc.pid)
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == (-5 if os.geteuid() == 0 else 0)
        assert direct.remote_end("send", "/x")[3:] == ["send", "-5", "/x"]
    finally:
        proc.kill()
        proc.wait()


def _write_slowly(path: Path, data: bytes, pieces: int = 4) -> None:
    """A file written in pieces with pauses, as CRIU writes an image: open all the while."""
    with open(path, "wb") as fh:
        for i in range(pieces):
            fh.write(data[i * len(data) // pieces:(i + 1) * len(data) // pieces])
            fh.flush()
            time.sleep(0.05)


def test_files_leave_as_they_are_closed_and_the_rest_at_fin(tmp_path: Path) -> None:
    """The remote sender in a folder that does not exist yet when it starts (Podman creates the
    checkpoint folder once the dump runs): each file crosses once it is closed, not while it
    is written; at FIN whatever did not leave (or changed since it left) goes, then SENT."""
    parent = tmp_path / "userdata"
    parent.mkdir()
    folder = parent / "checkpoint"
    dst = tmp_path / "dst"
    dst.mkdir()
    proc, listener, conn = _remote_sender(folder)
    conn.sendall(GO)
    landed: list[int] = []
    result: list[tuple[int, int, tuple[int, int] | None, float]] = []
    receiver = threading.Thread(target=lambda: result.append(unpack(conn, str(dst), landed.append)))
    receiver.start()
    folder.mkdir()
    pages = os.urandom(2_000_003)
    _write_slowly(folder / "pages-1.img", pages)
    (folder / "core-1.img").write_bytes(b"first")
    deadline = time.monotonic() + 10
    while sum(landed) < len(pages) + 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sum(landed) == len(pages) + 5                      # both crossed before FIN
    assert (dst / "pages-1.img").read_bytes() == pages
    (folder / "core-1.img").write_bytes(b"second, longer")    # changed after it left
    with open(folder / "files.img", "wb") as still_open:      # never closed before FIN
        still_open.write(b"late")
        still_open.flush()
        (folder / STATS_DUMP).write_bytes(b"not sent")
        conn.sendall(FIN)
        receiver.join(timeout=30)
    assert proc.wait(timeout=30) == 0
    files, total, said, busy = result[0]
    assert said == (files, total) and files == 4               # core-1.img twice
    assert (dst / "core-1.img").read_bytes() == b"second, longer"
    assert (dst / "files.img").read_bytes() == b"late"
    assert not (dst / STATS_DUMP).exists()
    assert 0 < busy < 10
    conn.close()
    listener.close()


def test_closed_files_follow_a_folder_made_again(tmp_path: Path) -> None:
    """A stale checkpoint folder replaced by a new one: only the new one's files count."""
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    closed = ClosedFiles(str(folder))
    assert closed.fd >= 0
    (folder / "old.img").write_bytes(b"x")
    assert closed.take() == ["old.img"]
    (folder / "old.img").unlink()
    folder.rmdir()
    folder.mkdir()
    time.sleep(0.01)
    assert closed.take() == []
    (folder / "new.img").write_bytes(b"y")
    assert closed.take() == ["new.img"]
    closed.close()


def test_the_local_sender_sends_early_then_the_rest_with_a_replacement(images: Path, tmp_path: Path) -> None:
    """The kit's own sender (this machine the source): files closed during the dump leave from
    a thread; files.img is held back for its rewrite and replaced at the end."""
    dst, a, tar = _receiving_tar(tmp_path)
    closed = ClosedFiles(str(images))
    sender = Sender(a.fileno(), str(images), late=("files.img",))
    stop_r, stop_w = os.pipe()
    worker = threading.Thread(target=sender.early, args=(closed, stop_r))
    worker.start()
    (images / "files.img").write_bytes(b"closed during the dump")
    (images / "core-9.img").write_bytes(b"late core")
    deadline = time.monotonic() + 10
    while "core-9.img" not in sender.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    os.write(stop_w, b"x")
    worker.join(timeout=10)
    assert sender.early_bytes == len(b"late core") and "files.img" not in sender.sent
    total, files = sender.rest({"files.img": b"rewritten"})
    a.close()
    assert tar.wait(timeout=30) == 0
    assert files == 9 and (dst / "core-9.img").read_bytes() == b"late core"
    _same(images, dst, files_img=b"rewritten")
    closed.close()
    os.close(stop_r)
    os.close(stop_w)
