"""A migration on one CPU, the lab's other workloads on the others (migration/cpu_split.py):
real processes and their real CPU affinity, no lab."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from p4cf_kit.migration import cpu_split

ALLOWED = os.sched_getaffinity(0)
needs_two_cpus = pytest.mark.skipif(len(ALLOWED) < 2, reason="a split needs two CPUs; this machine has one")


@pytest.fixture
def workload() -> Iterator[tuple[int, int]]:
    """A stand-in for a lab container: a shell (its main process) and its child."""
    proc = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    try:
        yield proc.pid, child
    finally:
        proc.kill()
        proc.wait()
        try:
            os.kill(child, 9)
        except ProcessLookupError:
            pass


@needs_two_cpus
def test_split_and_release(monkeypatch: pytest.MonkeyPatch, workload: tuple[int, int]) -> None:
    monkeypatch.delenv(cpu_split.ENV, raising=False)
    main, child = workload
    split = cpu_split.split([main])
    try:
        assert split is not None
        first = {min(ALLOWED)}
        assert split.migration == first and split.others == ALLOWED - first
        assert os.sched_getaffinity(0) == first
        assert os.sched_getaffinity(main) == split.others
        assert os.sched_getaffinity(child) == split.others          # the whole tree
        started = subprocess.Popen(["sleep", "60"])                  # what the migration starts
        try:
            assert os.sched_getaffinity(started.pid) == first
            split.release([started.pid])
            assert os.sched_getaffinity(started.pid) == ALLOWED
        finally:
            started.kill()
            started.wait()
        assert os.sched_getaffinity(0) == ALLOWED
        assert os.sched_getaffinity(main) == ALLOWED
        assert os.sched_getaffinity(child) == ALLOWED
        split.release()                                              # twice is harmless
    finally:
        os.sched_setaffinity(0, ALLOWED)


@needs_two_cpus
def test_a_late_process_joins_the_migration(monkeypatch: pytest.MonkeyPatch, workload: tuple[int, int]) -> None:
    """The source's conmon, started long before, joins the migration's CPUs (its cleanup follows)."""
    monkeypatch.delenv(cpu_split.ENV, raising=False)
    main, _ = workload
    split = cpu_split.split([])
    try:
        assert split is not None
        split.join(main)
        assert os.sched_getaffinity(main) == split.migration
        split.release([main])
        assert os.sched_getaffinity(main) == ALLOWED
    finally:
        os.sched_setaffinity(0, ALLOWED)


def test_turned_off_or_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cpu_split.ENV, "0")
    assert cpu_split.split([os.getpid()]) is None
    assert os.sched_getaffinity(0) == ALLOWED
    assert cpu_split.set_cpus([2 ** 22 + 1], ALLOWED) == 0                # no such process: skipped
    assert cpu_split.process_tree([0, -1]) == []
