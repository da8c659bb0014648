"""After a migration, does the backend still hold every value written to it? Asked of the client.

Why the client: only it knows what it wrote (every key with its value, per connection), and
each connection's keys live on the backend that connection reaches, so the check runs over
the same long-lived connections the migration carried. The kit drops `verify-<k>.request`
into the client's log folder (bind-mounted); the client answers with `verify-<k>.json`
(keys, present, missing, wrong, and whether the digest of the values read equals that of
the values written). See workload/rr_client.py.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p4cf_kit.errors import KitError

DEFAULT_TIMEOUT_S = 60.0


class DataLossError(KitError):
    """A data check found a key missing or wrong (or could not check every connection); `folder`
    is the results folder of the experiment, written before this was raised."""

    def __init__(self, message: str, folder: Path | None = None) -> None:
        super().__init__(message)
        self.folder = folder


@dataclass(frozen=True)
class DataCheck:
    """The client's answer to data-check request `request`."""

    request: int
    keys: int
    present: int
    missing: int
    wrong: int
    digests_match: bool
    unverified_connections: tuple[int, ...] = ()
    seconds: float = 0.0
    per_connection: tuple[dict[str, Any], ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        """Every key there with its value, on every connection."""
        return (not self.missing and not self.wrong and self.digests_match and self.present == self.keys
                and not self.unverified_connections)

    def describe(self) -> str:
        if self.ok:
            return f"{self.keys} keys checked: all present, values match (digest equal)"
        unverified = (f", {len(self.unverified_connections)} connection(s) could not be checked "
                      f"({', '.join(map(str, self.unverified_connections))})" if self.unverified_connections else "")
        return (f"DATA LOST: {self.missing} of {self.keys} keys missing, {self.wrong} wrong"
                f"{'' if self.digests_match else ', digests differ'}{unverified}")


def parse_answer(answer: dict[str, Any], seconds: float = 0.0) -> DataCheck:
    return DataCheck(request=int(answer["request"]), keys=int(answer["keys"]), present=int(answer["present"]),
                     missing=int(answer["missing"]), wrong=int(answer["wrong"]),
                     digests_match=bool(answer["digests_match"]),
                     unverified_connections=tuple(int(c) for c in answer.get("unverified_connections", [])),
                     seconds=seconds, per_connection=tuple(answer.get("per_connection", [])))


def request_check(log_dir: Path, request: int, timeout: float = DEFAULT_TIMEOUT_S) -> DataCheck:
    """Ask the client logging into `log_dir` to read back every key; wait for its answer."""
    answer_path = log_dir / f"verify-{request}.json"
    answer_path.unlink(missing_ok=True)
    t0 = time.monotonic()
    (log_dir / f"verify-{request}.request").write_text("")
    while not answer_path.exists():
        if time.monotonic() - t0 > timeout:
            raise DataLossError(f"the client in {log_dir} did not answer data check {request} within "
                                f"{timeout:g} s; is it running (and a workload that checks data, redis)?")
        time.sleep(0.05)
    return parse_answer(json.loads(answer_path.read_text()), time.monotonic() - t0)
