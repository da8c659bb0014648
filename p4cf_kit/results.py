"""Self-describing results folders: everything needed to read, trust and redraw a run.

Layout of one run (names are the constants below):

    results/<YYYYmmdd-HHMMSS>-<what>/
      config.toml              the experiment configuration as run
      versions.json            python, its packages, podman, criu, kernel, distribution
      meta.json                what, run id, started/finished (UTC ISO and CLOCK_REALTIME ns), host, notes
      raw/
        client.csv             client log (workload/tcp_client.py; analysis.CLIENT_LOG_COLUMNS)
        client.summary.json    client summary (per-connection sent/received/errors)
        server-<host>.log      stdout of each backend's tcp_server.py
        switch_counters.csv    counter reads (analysis.SWITCH_COUNTER_COLUMNS)
        migrations.json        phase records, a list (analysis.PHASE_RECORD_FIELDS)
        markers.csv            optional extra time markers (t_ns, label), e.g. pool changes
      figures/
        <figure>.csv           the data the figure was drawn from
        <figure>.<part>.csv    extra data of that figure (phases, markers, errors)
        <figure>.png/.svg/.pdf the figure

`p4cf plot DIR` redraws figures/ from its CSVs alone; `--from-raw` recomputes them
from raw/. The parent folder defaults to paths.results_dir().
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from p4cf_kit import __version__
from p4cf_kit.paths import results_dir

CONFIG_FILE = "config.toml"
VERSIONS_FILE = "versions.json"
META_FILE = "meta.json"
RAW_DIR = "raw"
FIGURES_DIR = "figures"
CLIENT_LOG = "client.csv"
CLIENT_SUMMARY = "client.summary.json"
SWITCH_COUNTERS = "switch_counters.csv"
MIGRATIONS = "migrations.json"
MARKERS = "markers.csv"
SERVER_LOG = "server-{host}.log"

#: Python packages whose versions are recorded (those that shape the numbers or figures).
RECORDED_PACKAGES = ("p4cf-kit", "pandas", "numpy", "matplotlib", "podman", "p4runtime-shell", "p4runtime",
                     "protobuf", "grpcio", "scapy", "ipywidgets", "jupyterlab")
#: Tools asked for their version: name -> command.
RECORDED_TOOLS: dict[str, tuple[str, ...]] = {
    "podman": ("podman", "--version"),
    "criu": ("criu", "--version"),
    "runc": ("runc", "--version"),
    "crun": ("crun", "--version"),
    "simple_switch_grpc": ("simple_switch_grpc", "--version"),
    "p4c": ("p4c", "--version"),
}


def _slug(text: str) -> str:
    """`Downtime vs. rate` -> `downtime-vs-rate`: safe in a folder name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "run"


def _utc_iso(ns: int) -> str:
    return _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.UTC).isoformat(timespec="milliseconds")


def _tool_version(command: tuple[str, ...]) -> str | None:
    """First line of `command`'s output, or None when the tool is missing or fails."""
    if shutil.which(command[0]) is None:
        return None
    try:
        proc = subprocess.run(list(command), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else None


def collect_versions(packages: Iterable[str] = RECORDED_PACKAGES,
                     tools: Mapping[str, tuple[str, ...]] = RECORDED_TOOLS) -> dict[str, Any]:
    """Versions of what produced a run; missing things are recorded as null, never guessed."""
    pkgs: dict[str, str | None] = {}
    for name in packages:
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pkgs[name] = None
    os_release: dict[str, str] = {}
    try:
        os_release = platform.freedesktop_os_release()
    except OSError:
        pass
    return {
        "kit": __version__,
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "packages": pkgs,
        "tools": {name: _tool_version(cmd) for name, cmd in tools.items()},
        "kernel": platform.release(),
        "machine": platform.machine(),
        "os": os_release.get("PRETTY_NAME"),
    }


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, (str, Path)):
        return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a valid TOML basic string
    raise TypeError(f"cannot write {type(value).__name__} to TOML: {value!r}")


def dump_toml(config: Mapping[str, Any], _prefix: str = "") -> str:
    """A small TOML writer for plain configuration (scalars, lists, nested tables)."""
    lines = [f"{key} = {_toml_value(v)}" for key, v in config.items() if not isinstance(v, Mapping)]
    for key, value in config.items():
        if isinstance(value, Mapping):
            name = f"{_prefix}{key}"
            body = dump_toml(value, f"{name}.")
            lines += ["", f"[{name}]", body] if body else ["", f"[{name}]"]
    return "\n".join(lines).strip("\n") + "\n"


@dataclass(frozen=True)
class ResultsFolder:
    """One run's folder; file names are fixed by the module constants."""

    path: Path

    @classmethod
    def create(cls, what: str, config: str | Mapping[str, Any] | None = None, parent: str | Path | None = None,
               notes: str = "", versions: Mapping[str, Any] | None = None) -> ResultsFolder:
        """Make `<parent>/<timestamp>-<what>/` with config.toml, versions.json and meta.json."""
        started = time.time_ns()
        stamp = _dt.datetime.fromtimestamp(started / 1e9, tz=_dt.UTC).strftime("%Y%m%d-%H%M%S")
        base = Path(parent) if parent is not None else results_dir()
        path = base / f"{stamp}-{_slug(what)}"
        suffix = 2
        while path.exists():
            path = base / f"{stamp}-{_slug(what)}-{suffix}"
            suffix += 1
        (path / RAW_DIR).mkdir(parents=True)
        (path / FIGURES_DIR).mkdir()
        folder = cls(path)
        text = config if isinstance(config, str) else dump_toml(config or {})
        (path / CONFIG_FILE).write_text(text, encoding="utf-8")
        folder._write_json(VERSIONS_FILE, dict(versions) if versions is not None else collect_versions())
        folder._write_json(META_FILE, {
            "what": what, "run_id": path.name, "started_ns": started, "started_utc": _utc_iso(started),
            "finished_ns": None, "finished_utc": None, "host": socket.gethostname(), "user": os.environ.get("USER"),
            "argv": sys.argv, "kit": __version__, "notes": notes,
        })
        return folder

    @classmethod
    def open(cls, path: str | Path) -> ResultsFolder:
        """An existing results folder (raises FileNotFoundError naming what is missing)."""
        folder = cls(Path(path))
        if not folder.path.is_dir():
            raise FileNotFoundError(f"{folder.path} is not a directory")
        if not (folder.figures_dir.is_dir() or folder.raw_dir.is_dir()):
            raise FileNotFoundError(f"{folder.path} has neither {RAW_DIR}/ nor {FIGURES_DIR}/: not a results folder")
        return folder

    @property
    def raw_dir(self) -> Path:
        return self.path / RAW_DIR

    @property
    def figures_dir(self) -> Path:
        return self.path / FIGURES_DIR

    def raw(self, name: str) -> Path:
        """Path of a raw file (e.g. `raw(CLIENT_LOG)`); the folder exists."""
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        return self.raw_dir / name

    def add_raw(self, source: str | Path, name: str | None = None) -> Path:
        """Copy a file made elsewhere (the client's bind-mounted CSV, a server log) into raw/."""
        target = self.raw(name or Path(source).name)
        shutil.copyfile(source, target)
        return target

    def server_log(self, host: str) -> Path:
        return self.raw(SERVER_LOG.format(host=host))

    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = json.loads((self.path / META_FILE).read_text())
        return meta

    def write_migrations(self, records: Iterable[Mapping[str, Any]]) -> Path:
        """Store phase records as raw/migrations.json (a list of dicts)."""
        path = self.raw(MIGRATIONS)
        path.write_text(json.dumps([dict(r) for r in records], indent=2, default=str) + "\n")
        return path

    def finish(self, **extra: Any) -> bool:
        """Stamp the finish time (and any extra facts) into meta.json; False, changing nothing, when
        the folder was finished already (re-running a notebook's last cell must not re-date a run)."""
        meta = self.meta()
        if meta.get("finished_ns") is not None:
            return False
        finished = time.time_ns()
        meta.update(finished_ns=finished, finished_utc=_utc_iso(finished), **extra)
        self._write_json(META_FILE, meta)
        return True

    def _write_json(self, name: str, data: Mapping[str, Any]) -> None:
        (self.path / name).write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
