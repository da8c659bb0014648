"""The lab lock between real processes: wait with the holder named, --no-wait, stale takeover.

Holders are child Python processes that take the lock of a lab whose state folder is a temp
folder, say "held" and keep it until told (a line on stdin) or killed. The last test runs the
real `p4cf down --no-wait` against a held lab (it touches Podman: run under the shared lock).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from p4cf_kit.errors import LabBusy
from p4cf_kit.lablock import holder, lab_lock

HOLDER = """
import sys
from pathlib import Path
from p4cf_kit.lablock import lab_lock
with lab_lock(Path(sys.argv[1]), "tl", sys.argv[2]):
    print("held", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


def start_holder(state: Path, doing: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(state), doing], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_no_wait_refuses_naming_the_holder(tmp_path: Path) -> None:
    a = start_holder(tmp_path, "migrating h2's backend to h4")
    try:
        with pytest.raises(LabBusy) as err:
            with lab_lock(tmp_path, "tl", "bringing the lab up", wait=False):
                pass
        text = str(err.value)
        assert f"pid {a.pid}" in text and "migrating h2's backend to h4" in text and "--no-wait" in text
        assert holder(tmp_path)["pid"] == a.pid
    finally:
        a.communicate("\n", timeout=10)
    with lab_lock(tmp_path, "tl", "bringing the lab up", wait=False):  # free again
        assert holder(tmp_path)["pid"] == os.getpid()
    assert holder(tmp_path) is None  # released: no record left


def test_second_operation_waits_and_says_for_whom(tmp_path: Path) -> None:
    a = start_holder(tmp_path, "running an experiment (5 migrations)")
    said: list[str] = []
    got = threading.Event()

    def second() -> None:
        with lab_lock(tmp_path, "tl", "taking the lab down", wait=True, say=said.append):
            got.set()

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.6)
    assert not got.is_set(), "the second operation must wait for the first"
    assert said and f"pid {a.pid}" in said[0] and "running an experiment" in said[0] and "waiting" in said[0]
    a.communicate("\n", timeout=10)
    t.join(timeout=10)
    assert got.is_set()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    a = start_holder(tmp_path, "migrating h3's backend to h2 (restore)")
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=10)
    assert holder(tmp_path)["pid"] == a.pid  # the record outlives its process
    said: list[str] = []
    with lab_lock(tmp_path, "tl", "bringing the lab up", wait=False, say=said.append):
        assert holder(tmp_path)["pid"] == os.getpid()
    assert len(said) == 1 and "stale" in said[0] and f"pid {a.pid}" in said[0] and "died" in said[0]
    assert "(restore)" in said[0]


def test_reentrant_in_a_thread_exclusive_between_threads(tmp_path: Path) -> None:
    with lab_lock(tmp_path, "tl", "running an experiment"):
        with lab_lock(tmp_path, "tl", "migrating"):  # nested: no deadlock
            pass
        assert holder(tmp_path)["pid"] == os.getpid()
        errors: list[BaseException] = []

        def other() -> None:
            try:
                with lab_lock(tmp_path, "tl", "pool change", wait=False):
                    pass
            except LabBusy as exc:
                errors.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert len(errors) == 1
    assert holder(tmp_path) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (p4cf down drives Podman)")
def test_cli_no_wait_refuses_with_the_holder(tmp_path: Path) -> None:
    from p4cf_kit.topology import cleanup
    from p4cf_kit.topology.names import LabNames
    state = LabNames("tlock").state
    proc = subprocess.Popen([sys.executable, "-c", HOLDER.replace('"tl"', '"tlock"'), str(state),
                             "migrating h2's backend to h3"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    try:
        out = subprocess.run([sys.executable, "-m", "p4cf_kit", "down", "--lab", "tlock", "--no-wait"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 1
        assert "lab 'tlock' is busy" in out.stderr and f"pid {proc.pid}" in out.stderr
        assert "migrating h2's backend to h3" in out.stderr
    finally:
        proc.communicate("\n", timeout=10)
    out = subprocess.run([sys.executable, "-m", "p4cf_kit", "down", "--lab", "tlock", "--no-wait"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    cleanup.remove_state("tlock")
