"""The checks behind `p4cf doctor`: one function each, run against the real machine.

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

import importlib
import importlib.metadata
import os
import re
import shutil
import socket
import struct
import subprocess
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from p4cf_kit.errors import KitError
from p4cf_kit.labels import NAME_PREFIX
from p4cf_kit.paths import state_dir
from p4cf_kit.podman import conf
from p4cf_kit.podman.runner import podman, podman_binary

OK, FAIL, WARN, SKIP = "OK", "FAIL", "WARN", "SKIP"

CRIU_MIN = (4, 2)
PODMAN_MIN = (4, 3)
PROTOBUF_BELOW = (3, 21)
SYSTEM_PODMAN_SOCKET = Path("/run/podman/podman.sock")
BMV2_IMAGE = "p4lang/behavioral-model"
P4C_IMAGE = "p4lang/p4c"
TCP_REPAIR = getattr(socket, "TCP_REPAIR", 19)  # linux/tcp.h; CRIU sets it on every TCP socket it dumps
ETH_P_ALL = 0x0003

FIX_CRIU = "run `make criu` (builds CRIU >= 4.2 from source into /usr/local; scripts/setup-criu.sh)"
FIX_BMV2 = ("optional, only for the BMv2 target: see README section 'BMv2 target' "
            f"(`podman pull docker.io/{BMV2_IMAGE}`, or install simple_switch_grpc)")
FIX_P4C = ("optional, only for the BMv2 target: see README section 'BMv2 target' "
           f"(`podman pull docker.io/{P4C_IMAGE}`, or install p4c)")


@dataclass(frozen=True)
class CheckResult:
    """What one check found. A failed `required` check makes `p4cf doctor` exit nonzero,
    a failed optional one is a warning; `skipped` marks a check that could not run here."""

    name: str
    ok: bool
    required: bool
    detail: str
    fix: str = ""
    skipped: bool = False

    @property
    def status(self) -> str:
        """OK, FAIL (required, failed), WARN (optional, failed) or SKIP."""
        if self.skipped:
            return SKIP
        if self.ok:
            return OK
        return FAIL if self.required else WARN

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


Check = Callable[[], CheckResult]


# ---------------------------------------------------------------- small helpers

def version_tuple(text: str) -> tuple[int, ...]:
    """(4, 2, 1) from "4.2.1", "v4.2.1-rc1" or "Version: 4.2.1"; () when there is none."""
    match = re.search(r"(\d+(?:\.\d+)*)", text)
    return tuple(int(p) for p in match.group(1).split(".")) if match else ()


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in version)


def _run(cmd: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; never raises for a nonzero exit."""
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)


def _output(proc: subprocess.CompletedProcess[str]) -> str:
    """The most telling line of a finished command's output (its last, stderr first)."""
    text = (proc.stderr.strip() or proc.stdout.strip())
    return text.splitlines()[-1] if text else f"exit status {proc.returncode}"


def resolve_binary(env_var: str, default: str) -> tuple[str | None, str]:
    """The binary named by `env_var` (a path or a name on PATH) or `default` on PATH.

    Returns (path or None, how it was looked up) so a failure can say which to fix."""
    wanted = os.environ.get(env_var) or default
    origin = f"{env_var}={wanted}" if os.environ.get(env_var) else f"`{default}` on PATH"
    if "/" in wanted:
        found = wanted if os.path.isfile(wanted) and os.access(wanted, os.X_OK) else None
        return found, origin
    return shutil.which(wanted), origin


def is_static_elf(path: str) -> bool:
    """True when `path` is an ELF executable without a program interpreter (PT_INTERP),
    i.e. it runs in an image that holds nothing else."""
    with open(path, "rb") as f:
        ident = f.read(16)
        if ident[:4] != b"\x7fELF":
            return False
        is64, endian = ident[4] == 2, "<" if ident[5] == 1 else ">"
        header = f.read(48 if is64 else 36)
        if is64:
            phoff, = struct.unpack_from(endian + "Q", header, 16)
            phentsize, phnum = struct.unpack_from(endian + "HH", header, 38)
        else:
            phoff, = struct.unpack_from(endian + "I", header, 12)
            phentsize, phnum = struct.unpack_from(endian + "HH", header, 26)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            p_type, = struct.unpack(endian + "I", f.read(4))
            if p_type == 3:  # PT_INTERP: needs a dynamic loader
                return False
    return True


def _local_image_names() -> list[str]:
    """Repository names of the images Podman has locally (kit configuration)."""
    out = podman("images", "--format", "{{.Repository}}", timeout=60).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def _has_image(names: Sequence[str], repository: str) -> bool:
    return any(n == repository or n.endswith("/" + repository) for n in names)


# ---------------------------------------------------------------- Python

# (distribution, required, reason). Required: what the package imports (pyproject.toml).
PYTHON_PACKAGES: tuple[tuple[str, bool, str], ...] = (
    ("jupyterlab", False, "the notebooks"),
    ("ipywidgets", True, "the widget panels"),
    ("podman", True, "the Podman API client"),
    ("p4runtime-shell", True, "the P4Runtime control plane"),
    ("p4runtime", True, "P4Runtime protos"),
    ("protobuf", True, "P4Runtime protos (< 3.21 for p4runtime-shell 0.0.6)"),
    ("grpcio", True, "P4Runtime over gRPC"),
    ("pandas", True, "analysis"),
    ("matplotlib", True, "plots"),
    ("scapy", False, "packet inspection in tests and notebooks"),
)


def check_python_package(dist: str, required: bool, reason: str) -> CheckResult:
    """One Python distribution is installed in this interpreter (protobuf: below 3.21)."""
    name = f"python:{dist}"
    fix = "run `make python` (installs requirements.txt into .venv)"
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return CheckResult(name, False, required, f"not installed (needed for {reason})", fix)
    if dist == "protobuf" and version_tuple(version)[:2] >= PROTOBUF_BELOW:
        return CheckResult(name, False, required,
                           f"{version} is too new: p4runtime-shell 0.0.6 needs protobuf < 3.21",
                           "run `make python` (pins protobuf==3.20.3)")
    return CheckResult(name, True, required, version)


def python_package_checks() -> list[Check]:
    """One check per entry of PYTHON_PACKAGES, each named after its distribution."""
    made: list[Check] = []
    for dist, required, reason in PYTHON_PACKAGES:
        def check(dist: str = dist, required: bool = required, reason: str = reason) -> CheckResult:
            return check_python_package(dist, required, reason)
        check.__name__ = f"check_python:{dist}"
        made.append(check)
    return made


def check_pycriu() -> CheckResult:
    """pycriu (CRIU's Python module, with its protobuf images) imports in this interpreter."""
    fix = "run `make criu` (builds pycriu with CRIU; scripts/link-pycriu.sh adds it to .venv)"
    try:
        module = importlib.import_module("pycriu")
        importlib.import_module("pycriu.images")
    except Exception as exc:  # ImportError, or protobuf refusing the generated modules
        return CheckResult("pycriu", False, True, f"does not import: {exc}", fix)
    return CheckResult("pycriu", True, True, f"imports from {Path(module.__file__).parent}")


# ---------------------------------------------------------------- privileges

def check_root() -> CheckResult:
    """The kit drives Podman (rootful), CRIU and network namespaces: it needs root."""
    uid = os.geteuid()
    if uid == 0:
        return CheckResult("root", True, True, "running as root")
    return CheckResult("root", False, True, f"running as uid {uid}",
                       "run as root: sudo .venv/bin/p4cf doctor")


# ---------------------------------------------------------------- Podman

def check_podman_version() -> CheckResult:
    """Podman is installed and at least 4.3 (checkpoint/restore options the kit uses)."""
    fix = "run `make system` (apt-get install podman runc netavark); Podman >= 4.3 is needed"
    try:
        version = podman("version", "--format", "{{.Client.Version}}", timeout=60).stdout.strip()
    except KitError as exc:
        return CheckResult("podman", False, True, str(exc), fix)
    if version_tuple(version)[:2] < PODMAN_MIN:
        return CheckResult("podman", False, True, f"{version} is older than {_dotted(PODMAN_MIN)}", fix)
    return CheckResult("podman", True, True, f"{version} at {podman_binary()}")


def _ping(sock: Path) -> bool:
    """The Podman API behind `sock` answers a ping through the `podman` Python package."""
    import podman as podman_py  # lazily: it is slow to import and only this check needs it

    try:
        with podman_py.PodmanClient(base_url=f"unix://{sock}", timeout=5) as client:
            return bool(client.ping())
    except Exception:
        return False


@contextmanager
def kit_podman_service(sock: Path, idle_seconds: int = 5) -> Iterator[subprocess.Popen[bytes]]:
    """A short-lived `podman system service` on a kit-owned socket, stopped by its pid.

    `--time` makes it exit on its own after `idle_seconds` idle, should the doctor die."""
    sock.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [podman_binary(), "system", "service", f"--time={idle_seconds}", f"unix://{sock}"],
        env=conf.podman_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        sock.unlink(missing_ok=True)


def check_podman_api() -> CheckResult:
    """Podman's REST API answers the `podman` Python package (optional: the kit uses the CLI
    where Podman 4.3's API falls short). Uses the system socket when it answers; otherwise
    starts a kit-owned service on a socket in the state directory, pings it, stops it."""
    name = "podman-api"
    fix = ("the kit starts its own service when it needs one; for a lasting one: "
           "`systemctl start podman.socket` (or `podman system service -t 0 &`)")
    if SYSTEM_PODMAN_SOCKET.exists() and _ping(SYSTEM_PODMAN_SOCKET):
        return CheckResult(name, True, False, f"system service answers at {SYSTEM_PODMAN_SOCKET}")
    sock = state_dir() / f"{NAME_PREFIX}doctor-{os.getpid()}.sock"
    try:
        with kit_podman_service(sock) as proc:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                    return CheckResult(name, False, False,
                                       f"`podman system service` exited ({proc.returncode}): {err}", fix)
                if sock.exists() and _ping(sock):
                    return CheckResult(name, True, False,
                                       f"answers on a kit-owned service ({sock}, stopped again); "
                                       f"no system service at {SYSTEM_PODMAN_SOCKET}")
                time.sleep(0.1)
    except KitError as exc:
        return CheckResult(name, False, False, str(exc), fix)
    return CheckResult(name, False, False, f"no answer on {sock} within 15 s", fix)


def check_oci_runtime() -> CheckResult:
    """With the kit's containers.conf, Podman uses runc (crun on Debian 12 has no CRIU)."""
    fix = f"apt-get install runc (the kit's containers.conf selects runtime = \"{conf.RUNTIME}\")"
    try:
        runtime = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60).stdout.strip()
    except KitError as exc:
        return CheckResult("oci-runtime", False, True, str(exc), fix)
    if runtime != conf.RUNTIME:
        return CheckResult("oci-runtime", False, True, f"Podman uses {runtime!r}, not {conf.RUNTIME}", fix)
    return CheckResult("oci-runtime", True, True, runtime)


def check_containers_conf() -> CheckResult:
    """Podman reads the kit's containers.conf (proved by its own debug log, not assumed)."""
    name = "containers-conf"
    fix = ("make the kit's state directory writable (or move it with P4CF_STATE_DIR), then see "
           "which files Podman reads: CONTAINERS_CONF=<that file> podman --log-level=debug info")
    try:
        path = conf.containers_conf_path()
        proc = podman("--log-level=debug", "info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60)
    except (KitError, OSError) as exc:
        return CheckResult(name, False, True, str(exc), fix)
    # logrus quotes the path and escapes the quotes: msg="Merged system config \"/path\""
    if re.search(r'Merged system config \\?"' + re.escape(str(path)) + r'\\?"', proc.stderr):
        return CheckResult(name, True, True, f"in effect: {path}")
    return CheckResult(name, False, True, f"Podman did not load {path}", fix)


# ---------------------------------------------------------------- CRIU

def _criu() -> tuple[str | None, str]:
    return resolve_binary("P4CF_CRIU", "criu")


def _criu_missing(name: str, origin: str) -> CheckResult:
    installed = Path("/usr/local/sbin/criu")
    if origin.startswith("`") and installed.exists():
        return CheckResult(name, False, True, f"not found ({origin}) but installed at {installed}",
                           f"add {installed.parent} to PATH")
    if origin.startswith("`"):
        return CheckResult(name, False, True, f"not found ({origin})", FIX_CRIU)
    return CheckResult(name, False, True, f"not found ({origin})",
                       f"unset P4CF_CRIU to use `criu` on PATH, or point it at CRIU >= 4.2; or {FIX_CRIU}")


def check_criu_version() -> CheckResult:
    """CRIU is found and >= 4.2 (3.17 fails its vDSO probe; 4.1 cannot dump TCP on 6.16+)."""
    path, origin = _criu()
    if path is None:
        return _criu_missing("criu", origin)
    proc = _run([path, "--version"])
    version = version_tuple(proc.stdout) if proc.returncode == 0 else ()
    if not version:
        return CheckResult("criu", False, True, f"{path} --version: {_output(proc)}", FIX_CRIU)
    if version[:2] < CRIU_MIN:
        return CheckResult("criu", False, True,
                           f"{_dotted(version)} at {path} is older than {_dotted(CRIU_MIN)}", FIX_CRIU)
    detail = f"{_dotted(version)} at {path}"
    on_path = shutil.which("criu")
    if on_path is None or os.path.realpath(on_path) != os.path.realpath(path):
        detail += f" (note: runc runs {on_path or 'no criu'} from PATH)"
    return CheckResult("criu", True, True, detail)


def check_criu_check() -> CheckResult:
    """`criu check` passes: the kernel has what CRIU needs to dump and restore."""
    path, origin = _criu()
    if path is None:
        return _criu_missing("criu-check", origin)
    proc = _run([path, "check"], timeout=120)
    if proc.returncode != 0:
        return CheckResult("criu-check", False, True, f"`criu check` failed: {_output(proc)}",
                           f"run `{path} check` as root to see which kernel feature is missing")
    return CheckResult("criu-check", True, True, _output(proc))


def _describe_timings(timings: Any) -> str:
    if timings is None:
        return ""
    if is_dataclass(timings) and not isinstance(timings, type):
        timings = asdict(timings)
    if isinstance(timings, dict):
        return ", ".join(f"{k} {v:.3f} s" if isinstance(v, float) else f"{k} {v}" for k, v in timings.items())
    return str(timings)


def check_criu_deep() -> CheckResult:
    """A real checkpoint/restore of a container holding an established TCP connection,
    through `p4cf_kit.criu.tcp_checkpoint_roundtrip()`."""
    from p4cf_kit.criu import tcp_checkpoint_roundtrip as roundtrip
    name = "criu-deep"
    try:
        result = roundtrip()
    except KitError as exc:
        return CheckResult(name, False, True, str(exc), FIX_CRIU)
    ok = bool(getattr(result, "ok", False))
    run_id = str(getattr(result, "run_id", "") or "")
    parts = [str(getattr(result, "detail", "") or ""), _describe_timings(getattr(result, "timings", None)),
             f"run {run_id}" if run_id else ""]
    detail = "; ".join(p for p in parts if p) or ("round trip passed" if ok else "round trip failed")
    return CheckResult(name, ok, True, detail, "" if ok else
                       "check `criu check --all` and the Podman checkpoint log; CRIU >= 4.2 and runc are needed")


# ---------------------------------------------------------------- kernel pieces

def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    ip = shutil.which("ip")
    if ip is None:
        raise FileNotFoundError("`ip` not found: apt-get install iproute2")
    return _run([ip, *args])


def check_netns() -> CheckResult:
    """Network namespaces can be made (one per host network of a lab)."""
    ns = f"{NAME_PREFIX}doctor-{os.getpid()}"
    fix = "run as root on a kernel with CONFIG_NET_NS; apt-get install iproute2"
    try:
        added = _ip("netns", "add", ns)
        if added.returncode != 0:
            return CheckResult("netns", False, True, f"`ip netns add {ns}`: {_output(added)}", fix)
        try:
            lo = _ip("-n", ns, "link", "set", "lo", "up")
            if lo.returncode != 0:
                return CheckResult("netns", False, True, f"namespace {ns} unusable: {_output(lo)}", fix)
        finally:
            _ip("netns", "delete", ns)
    except (OSError, subprocess.SubprocessError) as exc:
        return CheckResult("netns", False, True, str(exc), fix)
    return CheckResult("netns", True, True, f"created and deleted {ns}")


def check_veth() -> CheckResult:
    """veth pairs can be made (they wire host networks to switch ports)."""
    a, b = f"{NAME_PREFIX}d{os.getpid()}a", f"{NAME_PREFIX}d{os.getpid()}b"  # <= 15 chars
    fix = "run as root on a kernel with CONFIG_VETH (modprobe veth)"
    try:
        added = _ip("link", "add", a, "type", "veth", "peer", "name", b)
        if added.returncode != 0:
            return CheckResult("veth", False, True, f"`ip link add {a} type veth`: {_output(added)}", fix)
        _ip("link", "delete", a)  # deletes the peer too
    except (OSError, subprocess.SubprocessError) as exc:
        return CheckResult("veth", False, True, str(exc), fix)
    return CheckResult("veth", True, True, f"created and deleted {a}/{b}")


def check_af_packet() -> CheckResult:
    """AF_PACKET raw sockets open (the embedded switch's data plane uses them)."""
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.close()
    except (OSError, AttributeError) as exc:
        return CheckResult("af-packet", False, True, f"cannot open a raw packet socket: {exc}",
                           "run as root (CAP_NET_RAW) on a kernel with CONFIG_PACKET")
    return CheckResult("af-packet", True, True, "raw packet socket opens")


def check_tcp_repair() -> CheckResult:
    """TCP_REPAIR can be set on a socket: CRIU needs it to dump and restore connections."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 0)
    except OSError as exc:
        return CheckResult("tcp-repair", False, True, f"setsockopt(TCP_REPAIR): {exc}",
                           "run as root (CAP_NET_ADMIN); TCP repair mode is in every Linux >= 3.5")
    return CheckResult("tcp-repair", True, True, "setsockopt(TCP_REPAIR) works")


# ---------------------------------------------------------------- tools

def check_firewall() -> CheckResult:
    """nftables or iptables is there (netavark and CRIU's network locking use them)."""
    found = []
    for tool in ("nft", "iptables"):
        path = shutil.which(tool)
        if path:
            proc = _run([path, "--version"])
            found.append(f"{tool} {_dotted(version_tuple(proc.stdout))}" if proc.returncode == 0 else tool)
    if not found:
        return CheckResult("firewall", False, True, "neither nft nor iptables found",
                           "run `make system` (apt-get install nftables iptables)")
    return CheckResult("firewall", True, True, ", ".join(found))


def check_ethtool() -> CheckResult:
    """ethtool is there (the kit turns off offloads on veths feeding the software switch)."""
    path = shutil.which("ethtool")
    if path is None:
        return CheckResult("ethtool", False, True, "not found", "run `make system` (apt-get install ethtool)")
    proc = _run([path, "--version"])
    return CheckResult("ethtool", True, True, _dotted(version_tuple(proc.stdout)) or path)


def check_busybox_static() -> CheckResult:
    """A statically linked busybox is there: the kit's images are built offline from it."""
    fix = "run `make system` (apt-get install busybox-static)"
    path, origin = resolve_binary("P4CF_BUSYBOX", "busybox")
    if path is None:
        return CheckResult("busybox-static", False, True, f"not found ({origin})", fix)
    try:
        static = is_static_elf(path)
    except OSError as exc:
        return CheckResult("busybox-static", False, True, f"cannot read {path}: {exc}", fix)
    if not static:
        return CheckResult("busybox-static", False, True, f"{path} is dynamically linked", fix)
    return CheckResult("busybox-static", True, True, f"{path} (static)")


def check_kit_images() -> CheckResult:
    """The kit's workload images are built (optional: `make images` builds them)."""
    # Lazily: the image list belongs to p4cf_kit.podman.images; a fault there fails only this check.
    from p4cf_kit.podman.images import WORKLOAD_IMAGES

    fix = "run `make images`"
    refs = [image.ref for image in WORKLOAD_IMAGES]
    try:
        missing = [ref for ref in refs if podman("image", "exists", ref, check=False).returncode != 0]
    except KitError as exc:
        return CheckResult("kit-images", False, False, str(exc), fix)
    if missing:
        return CheckResult("kit-images", False, False, "missing: " + ", ".join(missing), fix)
    return CheckResult("kit-images", True, False, ", ".join(refs))


def _binary_or_image(name: str, env_var: str, binary: str, image: str, fix: str) -> CheckResult:
    path, origin = resolve_binary(env_var, binary)
    if path is not None:
        return CheckResult(name, True, False, f"{path}")
    try:
        if _has_image(_local_image_names(), image):
            return CheckResult(name, True, False, f"image {image} (no {binary} on PATH)")
    except KitError as exc:
        return CheckResult(name, False, False, f"{binary} not found ({origin}); {exc}", fix)
    return CheckResult(name, False, False, f"neither {binary} ({origin}) nor image {image}", fix)


def check_bmv2() -> CheckResult:
    """BMv2's simple_switch_grpc, for the optional BMv2 target (binary or local image)."""
    return _binary_or_image("bmv2", "P4CF_SIMPLE_SWITCH_GRPC", "simple_switch_grpc", BMV2_IMAGE, FIX_BMV2)


def check_p4c() -> CheckResult:
    """p4c, for compiling the program for the optional BMv2 target (binary or local image)."""
    return _binary_or_image("p4c", "P4CF_P4C", "p4c", P4C_IMAGE, FIX_P4C)


# ---------------------------------------------------------------- running them

def all_checks(deep: bool = False) -> list[Check]:
    """The checks in report order; `deep` adds the real TCP checkpoint/restore."""
    checks: list[Check] = [check_root, *python_package_checks(), check_pycriu,
                           check_podman_version, check_podman_api, check_oci_runtime,
                           check_containers_conf, check_criu_version, check_criu_check]
    if deep:
        checks.append(check_criu_deep)
    checks += [check_netns, check_veth, check_af_packet, check_tcp_repair,
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


def all_required_ok(results: Sequence[CheckResult]) -> bool:
    """True when no required check failed (skipped and optional ones do not count)."""
    return not any(r.status == FAIL for r in results)
