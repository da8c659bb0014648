"""`p4cf doctor` against the real machine: what it reports here, its JSON, a real failure
(CRIU taken away from it), the deep round trip, and that it leaves nothing behind.

Failures are made real: doctor runs in a subprocess whose PATH lacks criu, or whose
P4CF_CRIU names a file that does not exist. Run as root (the kit needs it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from p4cf_kit.doctor import checks
from p4cf_kit.doctor.checks import CheckResult
from p4cf_kit.doctor.report import render_json, render_text
from p4cf_kit.podman.runner import podman

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="p4cf doctor's checks need root (run the tests as root)")

EXPECTED_CHECKS = {
    "root", "pycriu", "podman", "podman-api", "oci-runtime", "containers-conf", "criu", "criu-check",
    "criu-fast-migration", "migration-modes",
    "netns", "veth", "af-packet", "ebpf-fastpath", "tcp-repair", "firewall", "ethtool", "busybox-static",
    "kit-images", "bmv2", "p4c",
    *(f"python:{d}" for d in ("jupyterlab", "ipywidgets", "podman", "p4runtime-shell", "p4runtime",
                              "protobuf", "grpcio", "pandas", "matplotlib", "scapy")),
}
OPTIONAL_CHECKS = {"podman-api", "criu-fast-migration", "migration-modes", "ebpf-fastpath", "kit-images", "bmv2", "p4c",
                   "python:jupyterlab", "python:scapy"}


def run_doctor(*args: str, env: dict[str, str] | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m p4cf_kit doctor ARGS` in a fresh process, like a user would run it."""
    return subprocess.run([sys.executable, "-m", "p4cf_kit", "doctor", *args], cwd=ROOT,
                          env=env if env is not None else dict(os.environ),
                          capture_output=True, text=True, timeout=timeout)


def doctor_json(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    proc = run_doctor("--json", *args, env=env)
    return proc.returncode, json.loads(proc.stdout)  # stdout must be the JSON object only


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def criu_version() -> tuple[int, ...]:
    path = shutil.which("criu")
    if path is None:
        return ()
    out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    return checks.version_tuple(out)


def kit_leftovers(pid: int) -> list[str]:
    """Namespaces, links, sockets and processes named after doctor run `pid`."""
    tag = str(pid)
    found = [f"netns {n}" for n in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                  text=True).stdout.split() if n.startswith("p4cf-") and tag in n]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [f"link {m}" for m in re.findall(r"\d+: (p4cf-[^:@\s]+)", links) if tag in m]
    sock = checks.state_dir() / f"p4cf-doctor-{pid}.sock"
    if sock.exists():
        found.append(f"socket {sock}")
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(sock) in cmdline:
                found.append(f"process {proc.name}: {cmdline.strip()}")
    return found


# ---------------------------------------------------------------- this machine

@pytest.mark.parametrize("check", [
    checks.check_root, checks.check_af_packet, checks.check_tcp_repair, checks.check_firewall,
    checks.check_ethtool, checks.check_busybox_static,
], ids=lambda c: c.__name__)
def test_machine_check_passes(check) -> None:
    result = check()
    assert result.ok, f"{result.name}: {result.detail} (fix: {result.fix})"
    assert result.required and result.status == "OK"


def test_ebpf_fastpath_check_loads_and_leaves_nothing() -> None:
    """Optional (older kernels lack tcx), but this machine's kernel has it: it must pass, and
    its namespace must be gone afterwards."""
    result = checks.check_ebpf_fastpath()
    assert result.ok and not result.required, result.detail
    assert not [n for n in os.listdir("/run/netns") if n.startswith("p4cf-doctor-bpf-")]


def test_ebpf_fastpath_check_names_what_the_build_lacks(monkeypatch, tmp_path) -> None:
    """Without its built program (set-up had no clang) the check says what is missing and how
    to build it."""
    from p4cf_kit.switch.embedded.ebpf import offload
    monkeypatch.setattr(offload, "PROGRAM", tmp_path / "forward.bpf.o")
    monkeypatch.setenv("PATH", str(tmp_path))  # no clang on it
    result = checks.check_ebpf_fastpath()
    assert not result.ok and not result.required
    assert "forward.bpf.o is not built (clang missing)" in result.detail, result.detail
    assert "apt-get install clang libbpf-dev" in result.fix and "setup-python.sh" in result.fix


@pytest.mark.podman
def test_podman_is_recent_and_uses_runc_with_the_kit_conf() -> None:
    version = checks.check_podman_version()
    assert version.ok, version.detail
    assert checks.version_tuple(version.detail)[:2] >= (4, 3)
    runtime = checks.check_oci_runtime()
    assert runtime.ok and runtime.detail == "runc", runtime.detail
    conf = checks.check_containers_conf()
    assert conf.ok, conf.detail
    assert str(checks.conf.containers_conf_path()) in conf.detail


@pytest.mark.netns
def test_kernel_pieces_work_and_leave_nothing_behind() -> None:
    for check in (checks.check_netns, checks.check_veth):
        result = check()
        assert result.ok, f"{result.name}: {result.detail}"
        assert "p4cf-" in result.detail and str(os.getpid()) in result.detail
    assert kit_leftovers(os.getpid()) == []


@pytest.mark.podman
def test_podman_api_answers_and_its_service_is_stopped() -> None:
    result = checks.check_podman_api()
    assert result.ok, result.detail
    assert not result.required
    assert kit_leftovers(os.getpid()) == []


def test_python_packages_are_reported_with_versions() -> None:
    from importlib.metadata import version

    for check in checks.python_package_checks():
        result = check()
        dist = result.name.removeprefix("python:")
        assert result.ok, result.detail
        assert result.detail == version(dist)
    protobuf = checks.check_python_package("protobuf", True, "protos")
    assert checks.version_tuple(protobuf.detail)[:2] < (3, 21)


def test_a_missing_required_package_fails_with_its_fix() -> None:
    result = checks.check_python_package("p4cf-no-such-distribution", True, "nothing")
    assert result.status == "FAIL" and "not installed" in result.detail
    assert "make python" in result.fix
    optional = checks.check_python_package("p4cf-no-such-distribution", False, "nothing")
    assert optional.status == "WARN"


def test_static_elf_is_told_from_a_dynamic_one() -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox not installed (make system installs busybox-static)")
    assert checks.is_static_elf(busybox)
    assert not checks.is_static_elf(os.path.realpath(sys.executable))
    assert not checks.is_static_elf(__file__)  # not ELF at all


def test_version_tuple_reads_tool_output() -> None:
    assert checks.version_tuple("Version: 4.2.1\nGitID: v4.2.1") == (4, 2, 1)
    assert checks.version_tuple("podman version 4.3.1") == (4, 3, 1)
    assert checks.version_tuple("no digits") == ()


# ---------------------------------------------------------------- the command

@pytest.mark.podman
@pytest.mark.netns
def test_json_parses_and_lists_every_check() -> None:
    rc, report = doctor_json()
    assert set(report) == {"ok", "checks"}
    found = by_name(report)
    assert set(found) == EXPECTED_CHECKS
    for name, check in found.items():
        assert set(check) >= {"name", "ok", "required", "detail", "fix", "status"}
        assert check["status"] in {"OK", "FAIL", "WARN", "SKIP"}
        assert check["required"] == (name not in OPTIONAL_CHECKS), name
        if check["status"] in {"FAIL", "WARN"}:
            assert check["fix"], f"{name} failed without a fix"
    required_failed = [n for n, c in found.items() if c["status"] == "FAIL"]
    assert report["ok"] == (not required_failed)
    assert (rc == 0) == report["ok"], required_failed
    for name in ("root", "podman", "oci-runtime", "netns", "veth", "af-packet", "tcp-repair"):
        assert found[name]["status"] == "OK", found[name]
    assert found["oci-runtime"]["detail"] == "runc"


@pytest.mark.podman
@pytest.mark.netns
def test_text_output_is_one_aligned_line_per_check() -> None:
    proc = run_doctor()
    lines = [ln for ln in proc.stdout.splitlines() if re.match(r"^(OK|FAIL|WARN|SKIP) ", ln)]
    assert {ln.split()[1] for ln in lines} == EXPECTED_CHECKS
    assert all(ln[6] != " " and ln[5] == " " for ln in lines), "names must start in one column"
    start = 6 + max(len(ln.split()[1]) for ln in lines) + 2
    for line in lines:
        assert line[start - 1] == " " and line[start] != " ", f"detail not aligned: {line!r}"
    assert re.search(r"^(ready|NOT ready)", proc.stdout, re.M)


def test_report_renders_fix_under_failures_and_json_only() -> None:
    results = [CheckResult("a", True, True, "fine"),
               CheckResult("longer-name", False, True, "broken", "do this"),
               CheckResult("opt", False, False, "missing", "maybe that"),
               CheckResult("deep", False, True, "not available yet", skipped=True)]
    text = render_text(results).splitlines()
    assert text[0] == "OK    a            fine"
    assert text[1] == "FAIL  longer-name  broken"
    assert text[2] == "                   fix: do this"
    assert text[3].startswith("WARN  opt") and text[4].endswith("fix: maybe that")
    assert text[5].startswith("SKIP  deep")
    assert "NOT ready" in text[-1]
    data = json.loads(render_json(results))
    assert data["ok"] is False
    assert [c["status"] for c in data["checks"]] == ["OK", "FAIL", "WARN", "SKIP"]
    assert json.loads(render_json(results[:1] + results[2:]))["ok"] is True


# ---------------------------------------------------------------- a real failure: no CRIU

def _assert_criu_failed(rc: int, report: dict) -> None:
    found = by_name(report)
    for name in ("criu", "criu-check"):
        assert found[name]["status"] == "FAIL", found[name]
        assert "not found" in found[name]["detail"]
        assert found[name]["fix"], f"{name} gave no fix"
    assert report["ok"] is False
    assert rc != 0


def test_criu_missing_via_env_fails_with_fix_and_nonzero_exit() -> None:
    env = dict(os.environ, P4CF_CRIU="/nonexistent/p4cf-test/criu")
    rc, report = doctor_json(env=env)
    _assert_criu_failed(rc, report)
    criu = by_name(report)["criu"]
    assert "P4CF_CRIU=/nonexistent/p4cf-test/criu" in criu["detail"]
    assert "make criu" in criu["fix"]


def test_criu_stripped_from_path_fails_with_fix_and_nonzero_exit() -> None:
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    criu_dirs = {d for d in dirs if d and os.path.isfile(os.path.join(d, "criu"))}
    env = {k: v for k, v in os.environ.items() if k != "P4CF_CRIU"}
    env["PATH"] = os.pathsep.join(d for d in dirs if d not in criu_dirs)
    assert shutil.which("criu", path=env["PATH"]) is None
    rc, report = doctor_json(env=env)
    _assert_criu_failed(rc, report)
    fix = by_name(report)["criu"]["fix"]
    assert "PATH" in fix or "make criu" in fix


def test_a_binary_that_is_not_criu_fails() -> None:
    rc, report = doctor_json(env=dict(os.environ, P4CF_CRIU=shutil.which("false") or "/bin/false"))
    criu = by_name(report)["criu"]
    assert criu["status"] == "FAIL" and criu["fix"]
    assert rc != 0


# ---------------------------------------------------------------- deep: a real TCP checkpoint/restore

@pytest.mark.criu
@pytest.mark.podman
@pytest.mark.slow
@pytest.mark.skipif(criu_version()[:2] < (4, 2),
                    reason="criu >= 4.2 is missing from PATH (make criu builds it)")
def test_deep_checkpoint_restore_of_a_tcp_connection() -> None:
    rc, report = doctor_json("--deep")
    deep = by_name(report)["criu-deep"]
    assert deep["status"] == "OK", deep
    assert rc == 0 or any(c["status"] == "FAIL" for c in report["checks"] if c["name"] != "criu-deep")
    run = re.search(r"run ([0-9a-f]+)$", deep["detail"])
    if run:  # everything the round trip made carries its run id; none of it may remain
        tag = f"p4cf-ckpt-{run.group(1)}-"
        for kind in (["ps", "-a"], ["pod", "ls"], ["network", "ls"]):
            names = podman(*kind, "--format", "{{.Name}}" if kind[0] != "ps" else "{{.Names}}").stdout
            assert tag not in names, f"left behind by the round trip: {names}"
