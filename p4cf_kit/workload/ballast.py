"""Memory ballast of the backend server: N MiB allocated, written, and kept dirty.

Why: a migration's cost grows with the memory it must move, and the kit's server alone is
about 12 MiB. The ballast makes the backend's resident size a parameter of the experiment.
Every page is written once at start (so it is resident and CRIU must dump it: untouched
pages would be the kernel's shared zero page), and a slice of a "hot" share keeps being
rewritten from the server's own loop (no thread: the server stays single-threaded, see
tcp_server.py), so the memory is dirty while it runs, as an application's working set is.
The ballast remembers what each page must hold, so `check()` finds a page a migration lost
(a lazy restore whose page source died would leave it zero-filled).

Standard library only: it runs inside the backend image.
"""

from __future__ import annotations

import time

PAGE = 4096
MIB = 1 << 20
HOT_SHARE = 0.0625        # the part of the ballast that keeps being rewritten (1/16)
TOUCH_PAGES = 256         # pages rewritten per touch (1 MiB)
TOUCH_EVERY_S = 0.05      # at most one touch per 50 ms: about 20 MiB/s of dirtied memory
FILL = 0x5A               # what every page holds at start


class Ballast:
    """`mib` MiB of private anonymous memory, every page written at creation."""

    def __init__(self, mib: int) -> None:
        if mib < 0:
            raise ValueError(f"ballast of {mib} MiB: use 0 or more")
        self.mib = mib
        self.memory = bytearray(bytes([FILL]) * MIB) * mib   # repeats by memcpy: writes every page
        self.pages = len(self.memory) // PAGE
        self.hot_pages = max(1, int(self.pages * HOT_SHARE)) if self.pages else 0
        self.expected = bytearray([FILL]) * self.pages   # first byte each page must hold
        self.generation = 0
        self.cursor = 0
        self.next_touch = 0.0

    def touch(self, now: float | None = None) -> int:
        """Rewrite one byte in each of the next TOUCH_PAGES hot pages when a touch is due;
        returns the pages written (0 when not due or empty). Cheap: one slice assignment."""
        if not self.hot_pages:
            return 0
        now = time.monotonic() if now is None else now
        if now < self.next_touch:
            return 0
        self.next_touch = now + TOUCH_EVERY_S
        count = min(TOUCH_PAGES, self.hot_pages - self.cursor)
        start = self.cursor * PAGE
        self.generation = (self.generation + 1) % 251
        mark = bytes([self.generation + 1]) * count
        self.memory[start:start + count * PAGE:PAGE] = mark
        self.expected[self.cursor:self.cursor + count] = mark
        self.cursor = (self.cursor + count) % self.hot_pages
        return count

    def check(self) -> int:
        """The number of pages whose first byte is not what was last written there (0: intact).
        One byte per page is enough: memory is lost a page at a time."""
        firsts = self.memory[::PAGE]
        if firsts == self.expected:
            return 0
        return sum(1 for got, want in zip(firsts, self.expected) if got != want)
