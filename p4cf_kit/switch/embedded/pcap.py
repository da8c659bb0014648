"""Classic pcap files of what a switch port receives and sends (like BMv2's --pcap option).

One file per port and direction (`port<N>_in.pcap`, `port<N>_out.pcap`), Ethernet link type,
microsecond timestamps. Frames are written whole: a GSO super-frame appears as the one large
frame the switch handled, not as the segments the kernel later cuts it into.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import BinaryIO

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
SNAPLEN = 262144


class PcapWriter:
    """Appends frames to one pcap file; flushes on close."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: BinaryIO = open(self.path, "wb")
        self._file.write(struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))

    def write(self, frame: bytes | bytearray | memoryview, timestamp: float | None = None) -> None:
        """Record one frame (captured whole up to SNAPLEN) at `timestamp` (default: now)."""
        ts = time.time() if timestamp is None else timestamp
        sec = int(ts)
        usec = int((ts - sec) * 1_000_000)
        caplen = min(len(frame), SNAPLEN)
        self._file.write(struct.pack("<IIII", sec, usec, caplen, len(frame)))
        self._file.write(frame[:caplen])

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class PortPcaps:
    """The in/out writers of every port, created under `directory`."""

    def __init__(self, directory: str | Path, ports: list[int]) -> None:
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        self.rx = {p: PcapWriter(root / f"port{p}_in.pcap") for p in ports}
        self.tx = {p: PcapWriter(root / f"port{p}_out.pcap") for p in ports}

    def flush(self) -> None:
        """Make everything written so far readable by others (files stay open)."""
        for writer in [*self.rx.values(), *self.tx.values()]:
            writer.flush()

    def close(self) -> None:
        for writer in [*self.rx.values(), *self.tx.values()]:
            writer.close()
