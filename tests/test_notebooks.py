"""Every notebook runs headless (nbclient, a real kernel, the real lab) and exports its figures.

The notebooks run as `p4cf demo` runs them: 01 and 02 attach to one shared lab, 03 and
04 bring up their own. A notebook whose capability is missing here (migration, before
p4cf_kit.migration exists) is reported skipped with its reason. The lab gets its own
name and subnets, so it can run beside other labs; results go to a temporary folder.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from p4cf_kit.commands import demo

pytestmark = [pytest.mark.podman, pytest.mark.netns, pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

CONFIG = """\
[lab]
name = "nbt"
vip = "10.73.0.100"
subnet_pattern = "10.73.{n}.0/24"
"""
#: Figures each notebook must leave in some results folder it made.
FIGURES = {
    "01_lab": {"topology"},
    "02_load_balancing": {"distribution", "throughput"},
    "03_migration": {"timeline-m1", "downtime-connections-m1", "throughput"},
    "04_experiment": {"downtime-cdf", "phases", "survival", "summary"},
    "05_machines": {"phases", "timeline-m1", "downtime-connections-m2"},
}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, demo.NotebookRun], Path]]:
    tmp = tmp_path_factory.mktemp("notebooks")
    config = tmp / "lab.toml"
    config.write_text(CONFIG)
    results_dir = tmp / "results"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("P4CF_RESULTS_DIR", str(results_dir))
        mp.setenv("P4CF_MIGRATIONS", "3")  # notebook 04: enough for a CDF, short enough for the suite
        runs = demo.run_notebooks(demo.notebook_paths(), tmp / "executed", str(config))
        yield {r.name: r for r in runs}, results_dir


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_notebook_runs_headless(demo_run: tuple[dict[str, demo.NotebookRun], Path], name: str) -> None:
    runs, results_dir = demo_run
    run = runs[name]
    if run.status == "skipped":
        assert run.detail and "not available" in run.detail, run.detail
        pytest.skip(f"{name}: {run.detail}")
    assert run.status == "ok", f"{name} failed: {run.detail}"
    made = {p.stem for p in results_dir.glob("*/figures/*.png")}
    assert FIGURES[name] <= made, f"{name}: missing figures {FIGURES[name] - made}"


def test_demo_leaves_nothing_behind(demo_run: tuple[dict[str, demo.NotebookRun], Path],
                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    """02 and 03 leave their lab up after Run All (live panels, live traffic); the demo still ends
    with no container, pod or switch of its lab left."""
    import tomllib

    from p4cf_kit.config import parse_config
    from p4cf_kit.notebook import lab_leftovers
    assert lab_leftovers(parse_config(tomllib.loads(CONFIG))) == []


def test_notebooks_hold_no_outputs_and_declare_needs() -> None:
    """The committed notebooks are clean (no outputs) and say what they need (for `p4cf demo`)."""
    for path in demo.notebook_paths():
        book = json.loads(path.read_text())
        assert all(not c.get("outputs") for c in book["cells"] if c["cell_type"] == "code"), path.name
        assert "lab" in book["metadata"]["p4cf"]["requires"], path.name


def test_notebooks_open_without_unsaved_changes() -> None:
    """JupyterLab writes the kernel's language_info into a notebook as it opens it: the committed
    notebooks hold exactly what the kit's kernel reports (no Python patch version), and this
    venv's `python3` kernelspec is that kernel (scripts/setup-python.sh). The browser test
    checks the tab is clean after opening."""
    from p4cf_kit.notebook.kernel import LANGUAGE_INFO, kernelspec_path
    for path in demo.notebook_paths():
        meta = json.loads(path.read_text())["metadata"]
        assert meta["language_info"] == LANGUAGE_INFO, path.name
        assert meta["kernelspec"] == {"display_name": "Python 3 (ipykernel)", "language": "python",
                                      "name": "python3"}, path.name
    spec = json.loads(kernelspec_path().read_text())
    assert spec["argv"][:3] == ["python", "-m", "p4cf_kit.notebook.kernel"], "run scripts/setup-python.sh"


def test_a_failing_cell_still_tears_the_lab_down(tmp_path: Path) -> None:
    """The lab a notebook brought up is removed when a later cell fails (teardown at kernel exit)."""
    import nbformat

    from p4cf_kit.config import load_config
    from p4cf_kit.notebook import lab_is_up, wait_lab_gone
    from p4cf_kit.podman.runner import podman
    from p4cf_kit.topology.names import LabNames
    config = tmp_path / "lab.toml"
    config.write_text(CONFIG.replace('"nbt"', '"nbfail"').replace("10.73.", "10.74."))
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell("from p4cf_kit import notebook as nb\nsession = nb.open_lab()"),
                  nbformat.v4.new_code_cell("assert session.started\nraise RuntimeError('a cell fails')")]
    path = tmp_path / "fails.ipynb"
    nbformat.write(book, path)
    with pytest.raises(Exception, match="a cell fails"):
        demo.execute_notebook(path, env={"P4CF_CONFIG": str(config)})
    cfg = load_config(config)
    assert wait_lab_gone(cfg, timeout=90)  # the teardown outlives the kernel
    assert not lab_is_up(cfg)
    left = podman("ps", "-a", "--filter", f"label={LabNames(cfg.name).lab_label}", "--format", "{{.Names}}",
                  check=False)
    assert left.stdout.strip() == ""


def test_kernel_exit_stops_live_traffic_in_an_attached_lab(tmp_path: Path) -> None:
    """A notebook that attached to a running lab leaves it up at kernel exit, but not the client
    traffic it started with `session.live_traffic` (which runs until stopped)."""
    import nbformat

    from p4cf_kit.config import load_config
    from p4cf_kit.lab import Lab
    from p4cf_kit.notebook import lab_is_up
    from p4cf_kit.topology.traffic import TrafficRun
    config = tmp_path / "lab.toml"
    config.write_text(CONFIG.replace('"nbt"', '"nblive"').replace("10.73.", "10.76."))
    cfg = load_config(config)
    lab = Lab(cfg)
    lab.up()
    try:
        book = nbformat.v4.new_notebook()
        book.cells = [nbformat.v4.new_code_cell(
            "from p4cf_kit import notebook as nb\nsession = nb.open_lab()\nassert not session.started\n"
            "live = session.live_traffic(connections=2)\nlive.wait_rows(10)\nprint(live.container)")]
        path = tmp_path / "live.ipynb"
        nbformat.write(book, path)
        done = demo.execute_notebook(path, env={"P4CF_CONFIG": str(config)})
        container = done.cells[0].outputs[-1]["text"].strip()
        run = TrafficRun(container, tmp_path, tmp_path / "client.csv")
        deadline = time.monotonic() + 30
        while run.state() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert run.state() == {}, f"{container} still there after the kernel exited"
        assert lab_is_up(cfg) and lab.pool() == ["h2", "h3"]  # the lab itself stays
    finally:
        lab.down()


def test_topology_figure_redraws_from_its_csv(demo_run: tuple[dict[str, demo.NotebookRun], Path],
                                              tmp_path: Path) -> None:
    """Notebook 01's topology figure, like every figure of the kit, can be drawn again from its data."""
    import pandas as pd

    from p4cf_kit.plots import topology
    _, results_dir = demo_run
    csvs = sorted(results_dir.glob("*/figures/topology.csv"))
    if not csvs:
        pytest.skip("notebook 01 did not run")
    data = pd.read_csv(csvs[-1])
    assert data["host"].tolist() == ["h1", "h2", "h3", "h4"]
    assert data.set_index("host")["role"].to_dict() == {"h1": "client", "h2": "backend", "h3": "backend",
                                                         "h4": "idle"}
    files = topology.plot_topology(data, tmp_path)
    assert files.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
