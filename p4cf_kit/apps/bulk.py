"""A redis backend loaded with N MiB of data (`backend.memory_mib`), and the check that it all stayed.

Why: a migration's cost grows with the memory it moves, and for redis that memory should be
data a migration could lose, checked key by key. The kit loads `p4cf:bulk:<i>` keys into each
backend after it is ready and, after each migration, reads them all back from the backend that
moved. Values follow from the key's number and a per-backend seed (workload/bulk_data.py), so
nothing is kept here, and data that ended up on another backend would not pass.

The program runs inside the backend's own container against 127.0.0.1 (`podman exec -i ...
python3 -`, its source on stdin): the redis image carries no kit scripts (it is Debian's
binary on the base image, which has python3), so any redis image the kit built works, on
any machine of the lab, and the load never crosses the switch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from p4cf_kit.apps.datacheck import DataCheck, DataLossError, parse_answer
from p4cf_kit.errors import KitError, PodmanError
from p4cf_kit.machines.machine import Machine
from p4cf_kit.workload import WORKLOAD_DIR

MIB = 1 << 20
VALUE_BYTES = 4090     # with redis's string header (5 bytes and a NUL) one value is one 4 KiB allocation
KEYS_PER_MIB = 256     # so 256 keys hold 1 MiB of data, and redis holds them in about 1 MiB (+3 % per key)
SECONDS_PER_MIB = 0.25   # generous: about 0.01 s/MiB on a 2-core VM, for load and for verify
MIN_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class BulkData:
    """`mib` MiB of bulk keys in the backend whose id is `backend` (its seed)."""

    mib: int
    backend: str

    @property
    def keys(self) -> int:
        return self.mib * KEYS_PER_MIB

    @property
    def seed(self) -> int:
        """Per backend: the same keys on two backends hold different values."""
        return int.from_bytes(hashlib.sha256(self.backend.encode()).digest()[:4], "big")

    @property
    def timeout_s(self) -> float:
        return MIN_TIMEOUT_S + self.mib * SECONDS_PER_MIB


def program() -> str:
    """resp.py and bulk_data.py as one program for `python3 -`: resp registered as a module first
    (bulk_data imports it), then bulk_data's main with the command line's arguments."""
    sources = {name: (WORKLOAD_DIR / f"{name}.py").read_text() for name in ("resp", "bulk_data")}
    return ("import sys, types\n"
            "def _module(name, source):\n"
            "    module = types.ModuleType(name)\n"
            "    sys.modules[name] = module\n"
            "    exec(compile(source, name + '.py', 'exec'), module.__dict__)\n"
            "    return module\n"
            f"_module('resp', {sources['resp']!r})\n"
            f"sys.exit(_module('bulk_data', {sources['bulk_data']!r}).main(sys.argv[1:]))\n")


def arguments(action: str, port: int, data: BulkData) -> list[str]:
    """The program's command line after `python3 -`."""
    return [action, "--port", str(port), "--keys", str(data.keys), "--value-bytes", str(VALUE_BYTES),
            "--seed", str(data.seed)]


def _run(machine: Machine, container: str, action: str, port: int, data: BulkData) -> dict[str, object]:
    proc = machine.podman("exec", "-i", container, "python3", "-", *arguments(action, port, data),
                          input=program(), timeout=data.timeout_s, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        said = (proc.stderr.strip() or proc.stdout.strip())[-600:] or "(nothing)"
        raise PodmanError(f"{action} of {data.mib} MiB of bulk data in {container} failed (exit "
                          f"{proc.returncode}): {said}")
    answer: dict[str, object] = json.loads(lines[-1])
    return answer


def load(machine: Machine, container: str, backend: str, port: int, mib: int) -> dict[str, object]:
    """Load `mib` MiB of bulk keys into redis in `container` (backend id `backend`); KitError with
    the numbers when the server does not hold them afterwards (INFO memory, DBSIZE)."""
    data = BulkData(mib, backend)
    answer = _run(machine, container, "load", port, data)
    check_held(answer, data, container)
    return answer


def check_held(answer: dict[str, object], data: BulkData, container: str) -> None:
    """The server holds at least every bulk key and their bytes (a maxmemory policy or an evicting
    server would hold less, and every measurement of memory would then be silently wrong)."""
    used = int(str(answer.get("used_memory", 0)))
    dbsize = int(str(answer.get("dbsize", 0)))
    want = data.keys * VALUE_BYTES
    if dbsize < data.keys or used < want:
        raise KitError(f"{container} holds {used / MIB:.1f} MiB in {dbsize} keys (INFO memory) after the kit "
                       f"loaded {data.mib} MiB in {data.keys} keys: it dropped data (maxmemory or eviction in "
                       "its config?). Fix: run the kit's redis image (`p4cf images build`), or lower "
                       "backend.memory_mib")


def verify(machine: Machine, container: str, backend: str, port: int, mib: int, request: int = 0) -> DataCheck:
    """Read back every bulk key of `backend` from redis in `container`: count, missing, wrong and
    both digests, as a DataCheck; DataLossError when it cannot be asked (the answer is unknown)."""
    data = BulkData(mib, backend)
    try:
        answer = _run(machine, container, "verify", port, data)
    except KitError as exc:
        raise DataLossError(f"the bulk data of backend {backend} could not be checked: {exc}") from exc
    return as_check(answer, request)


def as_check(answer: dict[str, object], request: int = 0) -> DataCheck:
    """The program's `verify` answer as a DataCheck: counts, and whether the two digests are equal."""
    digests_match = answer.get("digest_written") == answer.get("digest_read")
    return parse_answer({**answer, "request": request, "digests_match": digests_match},
                        float(str(answer.get("seconds", 0.0))))
