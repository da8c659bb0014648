"""The checks behind `p4cf doctor`: one function each, run against the real machine.

One module per subject (`python`, `podman`, `criu`, `kernel`, `tools`), sharing `result`
(the CheckResult type) and `probes` (running commands, reading versions). This package lists
them in report order and runs them; the names below stay importable from here.

Every check returns a `CheckResult`; a required check that fails makes the doctor exit
nonzero, an optional one is a warning. Checks that create something (a network
namespace, a veth pair, a Podman API service) give it a kit name carrying the doctor's
pid and remove it before returning, whatever happens.

Binaries can be pointed elsewhere through the environment (a path, or a name looked up
on PATH):

    P4CF_CRIU                 criu               (default: `criu` on PATH)
    P4CF_BUSYBOX              static busybox     (default: `busybox` on PATH)
    P4CF_SIMPLE_SWITCH_GRPC   BMv2 switch        (default: `simple_switch_grpc` on PATH)
    P4CF_P4C                  P4 compiler        (default: `p4c` on PATH)

P4CF_CRIU only moves what the doctor inspects: runc (under Podman) runs the `criu` it
finds on PATH, so the doctor says so when the two differ.
"""

from __future__ import annotations

from p4cf_kit.doctor.checks.criu import (
    CRIU_MIN,
    FIX_CRIU,
    check_criu_check,
    check_criu_deep,
    check_criu_fast_migration,
    check_criu_version,
    check_migration_modes,
)
from p4cf_kit.doctor.checks.kernel import (
    check_af_packet,
    check_ebpf_fastpath,
    check_netns,
    check_root,
    check_tcp_repair,
    check_veth,
)
from p4cf_kit.doctor.checks.podman import (
    PODMAN_MIN,
    SYSTEM_PODMAN_SOCKET,
    check_containers_conf,
    check_oci_runtime,
    check_podman_api,
    check_podman_version,
    kit_podman_service,
)
from p4cf_kit.doctor.checks.probes import resolve_binary, version_tuple
from p4cf_kit.doctor.checks.python import (
    PROTOBUF_BELOW,
    PYTHON_PACKAGES,
    check_pycriu,
    check_python_package,
    python_package_checks,
)
from p4cf_kit.doctor.checks.result import FAIL, OK, SKIP, WARN, Check, CheckResult, all_required_ok
from p4cf_kit.doctor.checks.tools import (
    check_bmv2,
    check_busybox_static,
    check_ethtool,
    check_firewall,
    check_kit_images,
    check_p4c,
    is_static_elf,
)

# What the checks are configured by, reachable here as before the split into modules.
from p4cf_kit.paths import state_dir
from p4cf_kit.podman import conf

# What callers (the doctor command, tests) reach through this package.
__all__ = [
    "all_checks", "all_required_ok", "Check", "check_af_packet", "check_bmv2",
    "check_busybox_static", "check_containers_conf", "check_criu_check", "check_criu_deep",
    "check_criu_fast_migration", "check_criu_version", "check_ebpf_fastpath", "check_ethtool",
    "check_firewall", "check_kit_images", "check_netns", "check_oci_runtime", "check_p4c",
    "check_podman_api", "check_podman_version", "check_pycriu", "check_python_package",
    "check_root", "check_tcp_repair", "check_veth", "CheckResult", "conf", "CRIU_MIN", "FAIL",
    "FIX_CRIU", "is_static_elf", "kit_podman_service", "OK", "PODMAN_MIN", "PROTOBUF_BELOW",
    "python_package_checks", "PYTHON_PACKAGES", "resolve_binary", "run_check", "run_checks", "SKIP",
    "state_dir", "SYSTEM_PODMAN_SOCKET", "version_tuple", "WARN",
]


def all_checks(deep: bool = False) -> list[Check]:
    """The checks in report order; `deep` adds the real TCP checkpoint/restore."""
    checks: list[Check] = [check_root, *python_package_checks(), check_pycriu,
                           check_podman_version, check_podman_api, check_oci_runtime,
                           check_containers_conf, check_criu_version, check_criu_check,
                           check_criu_fast_migration, check_migration_modes]
    if deep:
        checks.append(check_criu_deep)
    checks += [check_netns, check_veth, check_af_packet, check_ebpf_fastpath, check_tcp_repair,
               check_firewall, check_ethtool, check_busybox_static, check_kit_images,
               check_bmv2, check_p4c]
    return checks


def run_check(check: Check) -> CheckResult:
    """Run one check; an unexpected exception becomes a failed result naming it."""
    try:
        return check()
    except PermissionError as exc:  # e.g. the state directory, when not root
        name = getattr(check, "__name__", "check").removeprefix("check_").replace("_", "-")
        return CheckResult(name, False, True, str(exc), "run as root: sudo .venv/bin/p4cf doctor")
    except Exception as exc:  # a broken check must not hide the others
        name = getattr(check, "__name__", "check").removeprefix("check_").replace("_", "-")
        return CheckResult(name, False, True, f"check crashed: {type(exc).__name__}: {exc}",
                           "report this as a kit bug")


def run_checks(deep: bool = False) -> list[CheckResult]:
    return [run_check(check) for check in all_checks(deep)]
