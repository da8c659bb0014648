"""`p4cf demo`: run the notebooks headless, in order, and leave their figures under results/.

Why a command and not `jupyter nbconvert --execute`: the notebooks share one lab
bring-up where that is safe (01, 02), get a fresh lab where they move backends
around (metadata `p4cf.fresh_lab`: 03, 04), and a notebook whose capability is not
there yet (metadata `p4cf.requires`, e.g. migration) is skipped with the reason
printed, while the others still run. The executed notebooks are saved beside a
summary in results/<timestamp>-demo/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from p4cf_kit.errors import KitError

if TYPE_CHECKING:
    from p4cf_kit.config import LabConfig
    from p4cf_kit.lab import Lab

CELL_TIMEOUT_S = 600


@dataclass
class NotebookRun:
    """What happened to one notebook: ran (ok or failed) or skipped, and why."""

    name: str
    status: str  # "ok", "failed", "skipped"
    seconds: float = 0.0
    detail: str = ""


def notebook_paths(folder: Path | None = None) -> list[Path]:
    """The kit's notebooks in run order (NN_name.ipynb)."""
    from p4cf_kit.paths import NOTEBOOKS_DIR
    return sorted((folder or NOTEBOOKS_DIR).glob("[0-9][0-9]_*.ipynb"))


def notebook_meta(path: Path) -> dict[str, Any]:
    """The notebook's `p4cf` metadata: requires (capabilities) and fresh_lab."""
    return dict(json.loads(path.read_text()).get("metadata", {}).get("p4cf", {}))


def lab_unavailable_reason() -> str | None:
    """None when a lab can be brought up here: root, podman, the workload images."""
    if os.geteuid() != 0:
        return "the lab needs root (Podman, network namespaces); run as root"
    if shutil.which("podman") is None:
        return "podman is missing; run `make setup`"
    from p4cf_kit.config import ImagesConfig
    for image in (ImagesConfig().server, ImagesConfig().client):
        if subprocess.run(["podman", "image", "exists", image], capture_output=True).returncode != 0:
            return f"image {image} is missing; run `p4cf images build` (make images)"
    return None


def capability_checks() -> dict[str, Callable[[], str | None]]:
    """Capability name -> a check returning None when present, else the reason it is not."""
    from p4cf_kit.notebook import (
        experiment_unavailable_reason,
        machines_unavailable_reason,
        migration_unavailable_reason,
    )
    return {"lab": lab_unavailable_reason, "migration": migration_unavailable_reason,
            "experiment": experiment_unavailable_reason, "machines": machines_unavailable_reason}


def skip_reason(path: Path, checks: dict[str, Callable[[], str | None]] | None = None) -> str | None:
    """Why `path` cannot run on this machine now, or None."""
    checks = checks or capability_checks()
    for need in notebook_meta(path).get("requires", []):
        check = checks.get(need)
        reason = check() if check else f"unknown capability {need!r}"
        if reason:
            return reason
    return None


def execute_notebook(path: Path, out_path: Path | None = None, timeout: int = CELL_TIMEOUT_S,
                     env: dict[str, str] | None = None) -> Any:
    """Run every cell of `path` in a fresh kernel (cwd: its folder); save the executed copy to `out_path`.

    Raises nbclient's CellExecutionError on the first failing cell (the copy is saved anyway).
    The kernel talks over unix sockets (IPC) in a private temp folder, not TCP on loopback:
    nothing reaches the network, and ipykernel has no reason to warn about plain-text TCP.
    """
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    book = nbformat.read(path, as_version=4)
    old_env = dict(os.environ)
    os.environ.update(env or {})  # the kernel inherits this process's environment
    try:
        with tempfile.TemporaryDirectory(prefix="p4cf-kernel-") as sockets:
            km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "kernel"))
            client = NotebookClient(book, km=km, timeout=timeout, kernel_name="python3",
                                    resources={"metadata": {"path": str(path.parent)}})
            try:
                client.execute()
            finally:
                if km.has_kernel:  # a kernel manager we made is ours to stop (nbclient leaves it)
                    km.shutdown_kernel(now=False)
                if out_path is not None:
                    out_path.parent.mkdir(parents=True, exist_ok=True)
                    nbformat.write(book, out_path)
    finally:
        os.environ.clear()
        os.environ.update(old_env)
    return book


class SharedLab:
    """The lab the notebooks without `fresh_lab` attach to: brought up once, down at the end."""

    def __init__(self, config: LabConfig) -> None:
        self.config = config
        self.lab: Lab | None = None

    def ensure_up(self) -> None:
        from p4cf_kit.lab import Lab
        from p4cf_kit.notebook import lab_is_up
        if not lab_is_up(self.config):
            lab = self.lab = Lab(self.config)
            lab.up()

    def ensure_down(self) -> None:
        from p4cf_kit.lab import Lab
        (self.lab or Lab(self.config)).down()
        self.lab = None


def run_notebooks(paths: Sequence[Path], out_dir: Path | None, config_path: str | None = None,
                  log: Callable[[str], None] = print) -> list[NotebookRun]:
    """Run `paths` in order (see module doc); returns one NotebookRun per notebook."""
    from nbclient.exceptions import CellExecutionError

    from p4cf_kit.config import load_config
    from p4cf_kit.notebook import ENV_CONFIG
    env = {ENV_CONFIG: str(Path(config_path).resolve())} if config_path else {}
    shared = SharedLab(load_config(config_path))
    from p4cf_kit.notebook import lab_is_up
    if lab_is_up(shared.config):  # the demo tears its labs down: never someone else's
        raise KitError(f"lab {shared.config.name!r} is already up; `p4cf down --lab {shared.config.name}` first, "
                       "or pass --config with another lab name")
    checks = capability_checks()
    runs: list[NotebookRun] = []
    try:
        for path in paths:
            reason = skip_reason(path, checks)
            if reason:
                log(f"skip {path.stem}: {reason}")
                runs.append(NotebookRun(path.stem, "skipped", detail=reason))
                continue
            fresh = bool(notebook_meta(path).get("fresh_lab"))
            if fresh:
                shared.ensure_down()
            else:
                shared.ensure_up()
            log(f"run  {path.stem}{' (own lab)' if fresh else ''} ...")
            t0 = time.monotonic()
            try:
                execute_notebook(path, out_dir / path.name if out_dir else None, env=env)
                runs.append(NotebookRun(path.stem, "ok", time.monotonic() - t0))
                log(f"ok   {path.stem} in {time.monotonic() - t0:.0f} s")
            except CellExecutionError as exc:
                detail = _last_line(str(exc))
                runs.append(NotebookRun(path.stem, "failed", time.monotonic() - t0, detail))
                log(f"FAIL {path.stem}: {detail}")
            finally:
                if fresh:  # the notebook's own teardown started at kernel exit: let it finish, then make sure
                    from p4cf_kit.notebook import wait_lab_gone
                    wait_lab_gone(shared.config)
                    shared.ensure_down()
    finally:
        shared.ensure_down()
    return runs


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text


def _run(args: argparse.Namespace) -> int:
    from p4cf_kit import results
    from p4cf_kit.notebook import ENV_CONFIG
    args.config = args.config or os.environ.get(ENV_CONFIG) or None  # the lab the notebooks' kernels use
    paths = notebook_paths()
    if args.only:
        paths = [p for p in paths if any(p.stem.startswith(o) for o in args.only)]
    if not paths:
        raise KitError("no notebook to run (notebooks/NN_*.ipynb); check --only")
    folder = results.ResultsFolder.create("demo", {"demo": {"notebooks": [p.stem for p in paths],
                                                            "config": args.config or "packaged default"}})
    runs = run_notebooks(paths, folder.path / "notebooks", args.config)
    (folder.path / "demo.json").write_text(json.dumps([r.__dict__ for r in runs], indent=2) + "\n")
    folder.finish(notebooks={r.name: r.status for r in runs})
    made = sorted(p.parent.parent.name for p in folder.path.parent.glob("*/figures/*.png")
                  if p.stat().st_mtime >= folder.meta()["started_ns"] / 1e9)
    print(f"\nexecuted notebooks in {folder.path / 'notebooks'}")
    for name in sorted(set(made)):
        print(f"figures: {folder.path.parent / name / 'figures'}")
    failed = [r for r in runs if r.status == "failed"]
    print(f"{sum(r.status == 'ok' for r in runs)} ran, {sum(r.status == 'skipped' for r in runs)} skipped, "
          f"{len(failed)} failed")
    return 1 if failed else 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help="run the notebooks headless; figures land under results/",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config",
                        help="lab config (.toml/.yaml) for the notebooks "
                             "(default: $P4CF_CONFIG, else the packaged lab)")
    parser.add_argument("--only", nargs="*", metavar="NN", help="run only notebooks whose name starts so (e.g. 01 02)")
    parser.set_defaults(func=_run)
