"""How fast a checkpoint's images cross to another machine, against a bare TCP stream of the
same bytes over the same link, on an emulated second machine.

Per link rate (--link-gbit, tbf) and way (--transfer tcp,ssh), in both directions (here ->
there, there -> here), --repeats times: the kit's image stream (migration/transfer.py) of a
folder shaped like the echo server's checkpoint (one 12.9 MB pages file and 40 small image
files, 13.2 MB of random bytes), its two ends started and connected first (the migration's
prepare, timed apart), then the transfer the migration's downtime holds. The baseline, in the
same run: a bare TCP stream of as many bytes from a Python socket here into a program on the
other machine that only counts them (started over SSH), which is what this machine's CPUs and
the shaped link allow at best. Printed: medians of prepare and transfer, MB/s, the share of
the link rate, and the transfer over the bare stream.

    .venv/bin/python benchmarks/image_transfer.py [--link-gbit 1,10] [--transfer tcp,ssh]
                                                  [--repeats 7]
Needs root and openssh-server (make test-system); makes and removes emulated machine `tb`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from p4cf_kit.config import MachineConfig  # noqa: E402
from p4cf_kit.machines import emulated  # noqa: E402
from p4cf_kit.machines.machine import LOCAL  # noqa: E402
from p4cf_kit.machines.registry import open_machine  # noqa: E402
from p4cf_kit.machines.remote import RemoteMachine  # noqa: E402
from p4cf_kit.migration.transfer import ImageStream  # noqa: E402

MACHINE = "tb"
SRC = Path("/var/tmp/p4cf-transfer-bench-src")
DST = Path("/var/tmp/p4cf-transfer-bench-dst")
PAGES, SMALL, SMALL_BYTES = 12_900_000, 40, 7_000
SINK = r"""
import socket, sys
srv = socket.socket(); srv.bind((sys.argv[1], 0)); srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept(); buf = bytearray(1 << 20); n = 0
while True:
    k = conn.recv_into(buf)
    if not k:
        break
    n += k
print(n, flush=True)
"""


def make_images() -> int:
    shutil.rmtree(SRC, ignore_errors=True)
    SRC.mkdir(parents=True)
    (SRC / "pages-1.img").write_bytes(os.urandom(PAGES))
    for i in range(SMALL):
        (SRC / f"small-{i}.img").write_bytes(os.urandom(SMALL_BYTES))
    return PAGES + SMALL * SMALL_BYTES


def bare_stream(m: RemoteMachine, nbytes: int) -> float:
    """Seconds for `nbytes` from a socket here into a counting program there."""
    sink = m.popen(["python3", "-c", SINK, m.address], stdout=subprocess.PIPE)
    assert sink.stdout is not None
    port = int(sink.stdout.readline())
    data = os.urandom(1 << 20)
    with socket.create_connection((m.address, port)) as conn:
        time.sleep(0.2)
        t0 = time.monotonic()
        sent = 0
        while sent < nbytes:
            piece = memoryview(data)[:min(len(data), nbytes - sent)]
            conn.sendall(piece)
            sent += len(piece)
        conn.shutdown(socket.SHUT_WR)
        got = int(sink.stdout.readline())
        took = time.monotonic() - t0
    sink.wait()
    assert got == nbytes, (got, nbytes)
    return took


def one_case(m: RemoteMachine, way: str, here_to_there: bool, repeats: int) -> dict[str, float]:
    prepare, transfer, rates = [], [], []
    src, dst = (LOCAL, m) if here_to_there else (m, LOCAL)
    for _ in range(repeats):
        shutil.rmtree(DST, ignore_errors=True)
        t0 = time.monotonic()
        stream = ImageStream(src, SRC, dst, DST, direct=way == "tcp")
        prepare.append(time.monotonic() - t0)
        time.sleep(0.2)
        report = stream.run("10.0.0.1", "10.0.0.2")
        stream.close()
        transfer.append(report.seconds)
        rates.append(report.mb_per_s)
        assert (DST / "pages-1.img").stat().st_size == PAGES
    return {"prepare_s": statistics.median(prepare), "transfer_s": statistics.median(transfer),
            "mb_s": statistics.median(rates)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--link-gbit", default="1,10", metavar="R[,R...]")
    parser.add_argument("--transfer", default="tcp,ssh", metavar="WAY[,WAY...]")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    nbytes = make_images()
    print(f"{nbytes / 1e6:.1f} MB of images, medians of {args.repeats}")
    print(f"{'link':>9} {'way':>4} {'direction':>12} {'prepare':>8} {'transfer':>9} {'MB/s':>6} {'/link':>6} "
          f"{'bare':>7} {'/bare':>6}")
    try:
        for rate in [float(r) for r in args.link_gbit.split(",")]:
            emulated.emulate(MACHINE, link_gbit=rate)
            link_mb_s = rate * 1000 / 8
            for way in args.transfer.split(","):
                m = open_machine(MachineConfig(MACHINE, emulated=True, transfer=way))
                try:
                    m.run(["true"])
                    bare = statistics.median(bare_stream(m, nbytes) for _ in range(args.repeats))
                    for here_to_there in (True, False):
                        c = one_case(m, way, here_to_there, args.repeats)
                        print(f"{rate:>5g}Gb/s {way:>4} {'here->there' if here_to_there else 'there->here':>12} "
                              f"{c['prepare_s'] * 1000:>6.0f}ms {c['transfer_s'] * 1000:>7.1f}ms {c['mb_s']:>6.0f} "
                              f"{c['mb_s'] / link_mb_s:>6.2f} {bare * 1000:>5.1f}ms {c['transfer_s'] / bare:>6.2f}",
                              flush=True)
                finally:
                    m.close()
    finally:
        emulated.remove(MACHINE)
        shutil.rmtree(SRC, ignore_errors=True)
        shutil.rmtree(DST, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
