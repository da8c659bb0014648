"""How a checkpoint's memory best reaches another machine: CRIU's page server against the
kit's image stream, on an emulated second machine, per link rate and resident size.

The same process (a Python program holding --sizes MiB of non-zero memory) is dumped again
and again with `criu dump --leave-running`, so every case dumps the same pages:
  stream        what migrations do: `criu dump` into a folder here, then the kit's image
                stream (migration/transfer.py, over SSH or --transfer tcp) into a folder on
                the other machine. Downtime-relevant time: dump + stream.
  page-server   `criu page-server` on the other machine (started over SSH, listening on its
                address) receives the pages while `criu dump` writes them; the few other
                image files then take the same stream. Time: dump + stream of the rest.
Printed per case: medians over --repeats of dump, stream and total, and the ratio of
page-server's total to stream's (below 1: the page server is faster).

Why the kit still streams (README, "A migration across machines"): with a page server the
source keeps no pages of its own, so a transfer cut midway leaves nothing to roll back to.

    .venv/bin/python benchmarks/criu_page_server.py [--link-gbit 1,10] [--sizes 16,256]
                                                     [--repeats 3] [--transfer ssh|tcp]
Needs root, CRIU, openssh-server (make test-system); makes and removes emulated machine `pb`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from p4cf_kit.config import MachineConfig  # noqa: E402
from p4cf_kit.machines import emulated  # noqa: E402
from p4cf_kit.machines.machine import LOCAL, LocalMachine  # noqa: E402
from p4cf_kit.machines.registry import open_machine  # noqa: E402
from p4cf_kit.machines.remote import RemoteMachine  # noqa: E402
from p4cf_kit.migration.transfer import ImageStream  # noqa: E402

MACHINE = "pb"
PORT = 27127
REMOTE_DIR = "/var/tmp/p4cf-page-server-bench"
HOLDER = """
import os, sys, time
block = os.urandom(1 << 20)
held = [bytearray(block) for _ in range(int(sys.argv[1]))]
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def criu() -> str:
    found = shutil.which("criu") or "/usr/local/sbin/criu"
    if not os.access(found, os.X_OK):
        sys.exit("criu not found: run `make criu` (set-up builds it)")
    return found


def start_holder(mib: int) -> subprocess.Popen[str]:
    """The dumped process: its own session, no terminal, nothing CRIU cannot dump."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(mib)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        sys.exit("the memory holder did not start")
    return proc


def dump(pid: int, folder: Path, extra: list[str]) -> float:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    t0 = time.monotonic()
    proc = subprocess.run([criu(), "dump", "-t", str(pid), "-D", str(folder), "--leave-running",
                           "-o", "dump.log", *extra], capture_output=True, text=True)
    took = time.monotonic() - t0
    if proc.returncode != 0:
        log = (folder / "dump.log").read_text()[-2000:] if (folder / "dump.log").exists() else ""
        sys.exit(f"criu dump failed: {proc.stderr}\n{log}")
    (folder / "dump.log").unlink()
    return took


def stream(local: LocalMachine, folder: Path, remote: RemoteMachine, where: str, direct: bool) -> float:
    images = ImageStream(local, folder, remote, Path(where), direct=direct)  # started ahead, as in prepare
    t0 = time.monotonic()
    images.run("10.0.0.1", "10.0.0.2")
    return time.monotonic() - t0


def page_server(remote: RemoteMachine, addr: str, where: str) -> subprocess.Popen[bytes]:
    """`criu page-server` there, one session; returns once it listens (its status fd says so)."""
    proc = remote.popen(["sh", "-c", f"rm -rf {where} && mkdir -p {where} && exec criu page-server "
                         f"-D {where} --address {addr} --port {PORT} --status-fd 1 -o ps.log"],
                        stdout=subprocess.PIPE)
    assert proc.stdout is not None
    if proc.stdout.read(1) != b"\0":
        err = proc.stderr.read().decode() if proc.stderr else ""
        sys.exit(f"criu page-server did not start on machine {MACHINE}: {err}")
    return proc


def one_case(local: LocalMachine, remote: RemoteMachine, addr: str, pid: int, direct: bool,
             repeats: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in ("s_dump", "s_stream", "p_dump", "p_stream")}
    with tempfile.TemporaryDirectory(prefix="p4cf-pagebench-") as tmp:
        here = Path(tmp)
        for i in range(repeats):
            out["s_dump"].append(dump(pid, here / "s", []))
            remote.run(["rm", "-rf", f"{REMOTE_DIR}/s{i}"])
            out["s_stream"].append(stream(local, here / "s", remote, f"{REMOTE_DIR}/s{i}", direct))
            server = page_server(remote, addr, f"{REMOTE_DIR}/p{i}")
            out["p_dump"].append(dump(pid, here / "p", ["--page-server", "--address", addr,
                                                        "--port", str(PORT)]))
            if server.wait(timeout=60) != 0:
                sys.exit(f"criu page-server failed: {server.stderr.read().decode() if server.stderr else ''}")
            out["p_stream"].append(stream(local, here / "p", remote, f"{REMOTE_DIR}/p{i}", direct))
            sizes = remote.run(["sh", "-c", f"du -sm {REMOTE_DIR}/s{i} {REMOTE_DIR}/p{i}"]).stdout.split()
            if i == 0:
                print(f"    images there: stream {sizes[0]} MiB, page server {sizes[2]} MiB "
                      f"(left here by the page-server dump: {du_mib(here / 'p')} MiB)")
    remote.run(["rm", "-rf", REMOTE_DIR])
    return out


def du_mib(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir()) >> 20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--link-gbit", default="1,10", help="emulated link rates, comma-separated")
    ap.add_argument("--sizes", default="16,256", help="resident sizes in MiB, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--transfer", choices=("ssh", "tcp"), default="ssh", help="how the stream crosses")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (CRIU dumps, an emulated machine)")
    rates = [float(r) for r in args.link_gbit.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    local = LOCAL
    rows = []
    try:
        for rate in rates:
            rec = emulated.emulate(MACHINE, link_gbit=rate)
            remote = open_machine(MachineConfig(MACHINE, emulated=True))
            for mib in sizes:
                print(f"link {rate:g} Gbit/s, {mib} MiB resident, stream over {args.transfer}:")
                holder = start_holder(mib)
                try:
                    r = one_case(local, remote, rec.machine_addr, holder.pid, args.transfer == "tcp", args.repeats)
                finally:
                    holder.kill()
                    holder.wait()
                med = {k: statistics.median(v) for k, v in r.items()}
                rows.append((rate, mib, med))
            remote.close()
    finally:
        emulated.remove(MACHINE)
    print(f"\nmedians of {args.repeats} (seconds); ratio = page-server total / stream total")
    print(f"{'link':>7} {'MiB':>5} | {'dump':>6} {'stream':>6} {'total':>6} | {'dump':>6} {'rest':>6} "
          f"{'total':>6} | ratio")
    print(f"{'':>13} | {'--- stream (today) ---':^20} | {'--- page server ---':^20} |")
    for rate, mib, m in rows:
        s_total, p_total = m["s_dump"] + m["s_stream"], m["p_dump"] + m["p_stream"]
        print(f"{rate:>5g}G {mib:>5} | {m['s_dump']:6.3f} {m['s_stream']:6.3f} {s_total:6.3f} | "
              f"{m['p_dump']:6.3f} {m['p_stream']:6.3f} {p_total:6.3f} | {p_total / s_total:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
