"""A running traffic client: read its CSV while it runs, wait for it, stop it.

Why a handle: the client runs in a container (in the client host's pod) and writes
its CSV into a bind-mounted folder; notebooks want live DataFrames without knowing
Podman. The CSV is flushed by the client in whole lines, but a read can still meet
a half-written last line, which is dropped.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from p4cf_kit.errors import PodmanError
from p4cf_kit.podman.runner import podman

if TYPE_CHECKING:
    from p4cf_kit.apps.datacheck import DataCheck


@dataclass
class TrafficRun:
    """The client container `container`, logging to `csv_path` (inside `log_dir`)."""

    container: str
    log_dir: Path
    csv_path: Path
    custom_csv: Path | None = None   # a custom client's own CSV (analysis/custom_log.py), turned into csv_path

    def read(self) -> pd.DataFrame:
        """The client's CSV so far (complete lines only)."""
        if self.custom_csv is not None:
            self._convert_custom()
        try:
            text = self.csv_path.read_text()
        except FileNotFoundError:
            return pd.DataFrame()
        if not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
        if not text.strip():
            return pd.DataFrame()
        # `detail` is empty on most rows and text on errors: read it as text, not a guessed type
        return pd.read_csv(io.StringIO(text), dtype={"detail": str})

    def replies(self) -> pd.DataFrame:
        """Only the `reply` rows of the log."""
        df = self.read()
        return df[df["event"] == "reply"] if "event" in df else df

    def state(self) -> dict[str, Any]:
        proc = podman("inspect", "--type", "container", "--format", "json", self.container, check=False)
        if proc.returncode != 0:
            return {}
        info = json.loads(proc.stdout)
        return info[0]["State"] if info else {}

    def running(self) -> bool:
        return bool(self.state().get("Running"))

    def wait(self, timeout: float = 60.0) -> int:
        """Poll until the client exits; returns its exit code (PodmanError on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.state()
            if not st:
                raise PodmanError(f"client container {self.container} is gone")
            if not st.get("Running"):
                return int(st.get("ExitCode", 0))
            if time.monotonic() > deadline:
                raise PodmanError(f"client {self.container} still runs after {timeout:.0f} s; call stop()")
            time.sleep(0.1)

    def wait_rows(self, n: int, timeout: float = 20.0) -> pd.DataFrame:
        """Poll the CSV until it has at least `n` reply rows; returns the replies."""
        deadline = time.monotonic() + timeout
        while True:
            df = self.replies()
            if len(df) >= n:
                return df
            exited = not self.running()  # a client that is gone will log nothing more: say so now
            if exited and len(df := self.replies()) >= n:  # its last rows, written as it exited
                return df
            if exited or time.monotonic() > deadline:
                logs = podman("logs", "--tail", "20", self.container, check=False)
                output = (logs.stdout + logs.stderr).strip()
                when = "before the client exited" if exited else f"after {timeout:.0f} s"
                hint = ("\nthe client image lacks this checkout's workload programs (built by another "
                        "version of the kit): run `p4cf images build`"
                        if "can't open file" in output and "/opt/p4cf/" in output else "")
                raise PodmanError(f"only {len(df)} replies logged {when} (wanted {n}); "
                                  f"client output:\n{output}{hint}")
            time.sleep(0.1)

    def stop(self, timeout_s: int = 10) -> int:
        """SIGTERM the client (it drains and writes its summary), then remove the container."""
        podman("stop", "-t", str(timeout_s), self.container, check=False)
        code = int(self.state().get("ExitCode", 0) or 0)
        podman("rm", "-f", "-t", "0", self.container, check=False)
        if self.custom_csv is not None:
            self._convert_custom(final=True)
        return code

    def _convert_custom(self, final: bool = False) -> None:
        """Write the kit's client log (and at the end its summary) from the custom client's CSV."""
        from p4cf_kit.analysis.custom_log import load_custom_log, summary_from_log
        assert self.custom_csv is not None
        if not self.custom_csv.exists():
            return
        log = load_custom_log(self.custom_csv)
        log.to_csv(self.csv_path, index=False)
        if final:
            self.csv_path.with_suffix(".summary.json").write_text(json.dumps(summary_from_log(log), indent=2))

    def verify(self, request: int, timeout: float = 60.0) -> DataCheck:
        """Ask the client to read back every value it wrote (redis workload); its answer."""
        from p4cf_kit.apps.datacheck import request_check
        return request_check(self.log_dir, request, timeout)

    def summary(self) -> dict[str, Any]:
        """The client's summary JSON (written at exit), or {} before that."""
        path = self.csv_path.with_suffix(".summary.json")
        if not path.exists():
            cands = sorted(self.log_dir.glob("*.summary.json"))
            if not cands:
                return {}
            path = cands[0]
        summary: dict[str, Any] = json.loads(path.read_text())
        return summary
