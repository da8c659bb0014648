"""A watchdog that ends an image transfer whose bytes stopped moving.

Why: when the path to the other machine dies mid-transfer (a cable pulled, the machine
powered off), nothing fails at once: the writes block on full buffers until SSH's keep-alive
gives up (15-20 s) or TCP's retransmissions do (minutes), and all that time the backend is
frozen at the source. A live path moves some bytes every fraction of a second even at
1 Mbit/s, so `stall_s` seconds with no byte moved means the path is down; the watchdog then
cuts the transfer's pipes and sockets, the blocked read or write fails at once, and rollback
brings the backend back at the source.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import IO, cast

from p4cf_kit.migration import tar_stream

STALL_S = 5.0     # no byte in or out for this long: the path is taken for down
PIECE = tar_stream.PIECE  # writes go out in pieces this big, so progress shows on a slow link


class Watchdog:
    """Calls `cut` once when `touch` has not been called for `stall_s` seconds. `probe`, when
    given, is a byte count read on every look (e.g. what a `tar` of ours has read so far,
    from /proc): it growing counts as a touch.

    `armed=False` starts its thread now but watches only from `arm()` on: a thread's start
    waits until the new thread runs, which on a busy machine took up to 12 ms of a transfer
    phase of 40 (measured in migrations), so the transfer starts it in prepare and arms it."""

    def __init__(self, cut: Callable[[], None], stall_s: float = STALL_S,
                 probe: Callable[[], int] | None = None, armed: bool = True) -> None:
        self.stall_s = stall_s
        self.probe = probe
        self._probed = 0
        self.stalled = False
        self.moved = 0    # bytes read and written so far
        self._cut = cut
        self._last = time.monotonic()
        self._done = threading.Event()
        self._armed = threading.Event()
        if armed:
            self._armed.set()
        self._thread = threading.Thread(target=self._watch, name="p4cf-transfer-watchdog", daemon=True)
        self._thread.start()

    def arm(self) -> None:
        """Watch from now on."""
        self._last = time.monotonic()
        self._armed.set()

    def touch(self, n: int = 0) -> None:
        self.moved += n
        self._last = time.monotonic()

    def stop(self, wait: bool = True) -> None:
        """No more cuts; `wait=False` does not wait for the thread to end (it ends at its next
        look, without acting)."""
        self._done.set()
        self._armed.set()
        if wait:
            self._thread.join()

    def _watch(self) -> None:
        self._armed.wait()
        while not self._done.wait(min(0.25, self.stall_s / 4)):
            if self.probe is not None:
                seen = self.probe()
                if seen > self._probed:
                    self.touch(seen - self._probed)
                    self._probed = seen
            if time.monotonic() - self._last > self.stall_s and not self._done.is_set():
                self.stalled = True
                self._cut()
                return


class _Watched:
    """A byte stream whose every read and write piece tells the watchdog it moved."""

    def __init__(self, stream: IO[bytes], dog: Watchdog, counts: bool) -> None:
        self._stream, self._dog, self._counts = stream, dog, counts

    def read(self, size: int = -1) -> bytes:
        """At most one piece: a short read is fine for tarfile, and progress shows per piece."""
        read1 = getattr(self._stream, "read1", None)
        want = PIECE if size < 0 else min(size, PIECE)
        data: bytes = read1(want) if read1 is not None else self._stream.read(want)
        self._dog.touch(len(data) if self._counts else 0)
        return data

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        for start in range(0, len(view), PIECE):
            piece = view[start:start + PIECE]
            self._stream.write(piece)
            self._stream.flush()
            self._dog.touch(len(piece) if self._counts else 0)
        return len(view)

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()


def watched(stream: IO[bytes], dog: Watchdog, counts: bool = True) -> IO[bytes]:
    """`stream` with progress told to `dog` (its bytes added to `dog.moved` when `counts`: one
    side of a relay counts, not both); it offers what tarfile's stream modes use (read, write,
    flush, close), which is all the transfer hands it to."""
    return cast(IO[bytes], _Watched(stream, dog, counts))
