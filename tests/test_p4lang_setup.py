"""`scripts/setup-p4lang.sh` (`make p4lang`): p4lang's BMv2/p4c tarballs, checked before install.

Real runs of the script as root. A tarball whose SHA-256 differs from its SHA256SUMS line is
refused and nothing at all is installed, not even a good tarball beside it; a rerun over the
tarballs already installed is a quiet no-op (CI passes them in P4CF_P4LANG_DIR).
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "setup-p4lang.sh"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="installs under /opt/p4lang: needs root")


def _tarball(path: Path, member: str) -> str:
    """A tar.xz holding one small file at `member`; returns its SHA-256."""
    data = b"p4cf test marker\n"
    with tarfile.open(path, "w:xz") as tar:
        info = tarfile.TarInfo(member)
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})


def test_wrong_checksum_installs_nothing(tmp_path: Path) -> None:
    good = tmp_path / "p4lang-p4c-0000000-debian12-amd64.tar.xz"
    bad = tmp_path / "p4lang-bmv2-0000000-debian12-amd64.tar.xz"
    good_marker = Path(f"/opt/p4lang/bin/p4cf-test-good-{os.getpid()}")
    bad_marker = Path(f"/opt/p4lang/bin/p4cf-test-bad-{os.getpid()}")
    good_sum = _tarball(good, str(good_marker).lstrip("/"))
    _tarball(bad, str(bad_marker).lstrip("/"))
    (tmp_path / "SHA256SUMS").write_text(f"{good_sum}  {good.name}\n{'0' * 64}  {bad.name}\n")
    try:
        proc = _run({"P4CF_P4LANG_DIR": str(tmp_path)})
        assert proc.returncode != 0
        assert f"SHA-256 of {bad}" in proc.stderr and "nothing installed" in proc.stderr
        assert not good_marker.exists() and not bad_marker.exists()
    finally:
        good_marker.unlink(missing_ok=True)
        bad_marker.unlink(missing_ok=True)


def test_unlisted_tarball_is_refused(tmp_path: Path) -> None:
    tarball = tmp_path / "p4lang-bmv2-0000000-debian12-amd64.tar.xz"
    _tarball(tarball, f"opt/p4lang/bin/p4cf-test-unlisted-{os.getpid()}")
    (tmp_path / "SHA256SUMS").write_text("")
    proc = _run({"P4CF_P4LANG_DIR": str(tmp_path)})
    assert proc.returncode != 0 and f"no line for {tarball.name}" in proc.stderr
    assert not Path(f"/opt/p4lang/bin/p4cf-test-unlisted-{os.getpid()}").exists()


@pytest.mark.skipif(not os.environ.get("P4CF_P4LANG_DIR"),
                    reason="P4CF_P4LANG_DIR not set (CI sets it to the vendored tarballs)")
def test_rerun_with_installed_tarballs_is_quiet() -> None:
    """README's `P4CF_P4LANG_DIR=... make p4lang`, again after `make test` installed them: silent."""
    first = subprocess.run(["make", "-s", "p4lang"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(["make", "-s", "p4lang"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert Path("/opt/p4lang/bin/simple_switch_grpc").is_file() and Path("/opt/p4lang/bin/p4c").is_file()


@pytest.mark.skipif(not os.environ.get("P4CF_P4LANG_DIR"),
                    reason="P4CF_P4LANG_DIR not set (CI sets it to the vendored tarballs)")
def test_doctor_reports_version_and_origin() -> None:
    from p4cf_kit.doctor.checks.tools import check_bmv2, check_p4c
    for result, binary, tarball in ((check_bmv2(), "simple_switch_grpc", "p4lang-bmv2-"),
                                    (check_p4c(), "p4c", "p4lang-p4c-")):
        assert result.ok, result.detail
        assert f"/opt/p4lang/bin/{binary}" in result.detail and "version unknown" not in result.detail
        assert f"`make p4lang` from {tarball}" in result.detail or "on PATH" in result.detail
