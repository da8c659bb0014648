"""A migration's own work at idle CPU priority (podman/idle_cpu.py) and the CRIU action script that
makes a restore's cgroup idle until the backend resumes (checkpoint/runc_conf.py): real cgroups
and real processes, no lab."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from p4cf_kit.checkpoint.runc_conf import render_hook
from p4cf_kit.podman import idle_cpu

HIERARCHY = idle_cpu.cpu_hierarchy()
needs_cpu_cgroup = pytest.mark.skipif(HIERARCHY is None, reason="no cgroup cpu controller with cpu.idle here")


def _cgroup_line(text: str) -> str:
    """The cpu controller's path in a /proc/PID/cgroup text."""
    assert HIERARCHY is not None
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if (HIERARCHY.v1 and "cpu" in controllers.split(",")) or (not HIERARCHY.v1 and line.startswith("0::")):
            return path
    raise AssertionError(f"no cpu cgroup in {text!r}")


@needs_cpu_cgroup
def test_commands_start_in_the_idle_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(idle_cpu.ENV, raising=False)
    group = idle_cpu.idle_group()
    assert group is not None and group.name == idle_cpu.GROUP
    assert (group / "cpu.idle").read_text().strip() == "1"
    out = subprocess.run([*idle_cpu.in_idle_group(group), "cat", "/proc/self/cgroup"], check=True,
                         capture_output=True, text=True).stdout
    assert _cgroup_line(out) == f"/{idle_cpu.GROUP}"


def test_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(idle_cpu.ENV, "0")
    assert idle_cpu.idle_group() is None
    assert idle_cpu.in_idle_group(None) == []


@pytest.fixture
def container_cgroup() -> Iterator[tuple[str, Path]]:
    """A cgroup standing in for a landing container's: its path names the container id."""
    assert HIERARCHY is not None
    cid = "f" * 64
    group = HIERARCHY.root / f"p4cf-test-{cid}"
    group.mkdir(exist_ok=True)
    try:
        yield cid, group
    finally:
        group.rmdir()


@needs_cpu_cgroup
def test_hook_makes_the_restore_idle_until_resume(tmp_path: Path, container_cgroup: tuple[str, Path]) -> None:
    """The action script run as CRIU runs it (its parent, here a shell placed in the container's
    cgroup, is CRIU): idle at pre-restore, normal again at pre-resume, then the resumed marker."""
    cid, group = container_cgroup
    gates = tmp_path / "gates"
    gates.mkdir()
    images = tmp_path / "containers" / cid / "userdata" / "checkpoint"
    images.mkdir(parents=True)
    link = tmp_path / "imgdir"
    link.symlink_to(images)
    hook = tmp_path / "hook"
    hook.write_text(render_hook(gates, HIERARCHY))
    hook.chmod(0o755)

    def run(action: str) -> str:
        script = 'echo $$ > "$1/cgroup.procs" && "$0" && cat "$1/cpu.idle"'
        return subprocess.run(["sh", "-c", script, str(hook), str(group)], check=True, capture_output=True,
                              text=True, env={"PATH": "/usr/bin:/bin", "CRTOOLS_SCRIPT_ACTION": action,
                                              "CRTOOLS_IMAGE_DIR": str(link)}).stdout.strip()

    assert run("pre-restore") == "0"                      # not asked for (no .idle marker)
    (gates / f"{cid}.idle").touch()
    assert run("pre-restore") == "1"
    assert run("pre-dump") == "1"                         # other stages leave it alone
    (gates / f"{cid}.wait").touch()
    assert run("pre-resume") == "0"
    assert (gates / f"{cid}.resumed").exists()



@needs_cpu_cgroup
def test_conmon_joins_and_what_it_starts_later_follows(monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration moves the source container's conmon into the idle group before the dump, so
    the `podman container cleanup` conmon starts when the container stops runs there too. Here
    a shell named conmon stands in for it: its child is the container's main process, and what
    it starts after the move (its exit command) lands in the idle group."""
    monkeypatch.delenv(idle_cpu.ENV, raising=False)
    group = idle_cpu.idle_group()
    script = 'echo conmon > /proc/$$/comm; sleep 60 & echo $!; read -r _; cat /proc/self/cgroup; kill $!'
    shell = subprocess.Popen(["sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert shell.stdout is not None and shell.stdin is not None
        main = int(shell.stdout.readline())
        assert idle_cpu.conmon_of(main) == shell.pid
        assert idle_cpu.conmon_of(shell.pid) is None          # its parent (pytest) is no conmon
        assert idle_cpu.move_into(group, shell.pid)
        assert _cgroup_line(Path(f"/proc/{shell.pid}/cgroup").read_text()) == f"/{idle_cpu.GROUP}"
        assert _cgroup_line(Path(f"/proc/{main}/cgroup").read_text()) != f"/{idle_cpu.GROUP}"  # only conmon
        out, _ = shell.communicate("exit\n", timeout=10)
        assert _cgroup_line(out) == f"/{idle_cpu.GROUP}"
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()


def test_conmon_moves_are_harmless_when_nothing_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(idle_cpu.ENV, "0")
    assert idle_cpu.conmon_of(2 ** 22 + 1) is None           # no such process
    assert not idle_cpu.move_into(None, os.getpid())
    assert not idle_cpu.move_into(Path("/nonexistent-group"), os.getpid())
