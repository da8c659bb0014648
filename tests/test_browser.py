"""The migration notebook in a real browser: JupyterLab on 127.0.0.1, headless Chromium via Playwright.

Opens 03_migration.ipynb, runs all cells, clicks Migrate in the panel, and checks the
result table and the plot appear. Before the kit can migrate, it checks the panel
says so instead (button disabled, "migration not available yet"). A screenshot is
saved under $P4CF_TEST_ARTIFACTS (default: test-artifacts/). The JupyterLab server
is stopped by its pid; the lab belongs to the test, so Run All cannot tear it down.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from p4cf_kit.paths import NOTEBOOKS_DIR, REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOTEBOOK = "03_migration.ipynb"
CONFIG = """\
[lab]
name = "uit"
vip = "10.75.0.100"
subnet_pattern = "10.75.{n}.0/24"
"""

pytestmark = [pytest.mark.podman, pytest.mark.netns, pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason="chromium is missing: run `make test-system` (scripts/setup-system.sh --test installs Debian's chromium; `make test` does it first)")]


def artifacts_dir() -> Path:
    path = Path(os.environ.get("P4CF_TEST_ARTIFACTS") or REPO_ROOT / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the notebook (JupyterLab autosaves; the repo's copy stays clean) and the lab config."""
    work = tmp_path_factory.mktemp("browser")
    (work / "notebooks").mkdir()
    shutil.copy(NOTEBOOKS_DIR / NOTEBOOK, work / "notebooks" / NOTEBOOK)
    (work / "lab.toml").write_text(CONFIG)
    # Render every cell (JupyterLab 4 leaves off-screen cells out of the DOM by default).
    settings = work / "lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    # Loopback only: never fetch Jupyter news.
    apputils = work / "lab-settings" / "@jupyterlab" / "apputils-extension"
    apputils.mkdir(parents=True)
    (apputils / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    return work


@pytest.fixture(scope="module")
def lab(workdir: Path) -> Iterator[Any]:
    from p4cf_kit.config import load_config
    from p4cf_kit.lab import Lab
    lab = Lab(load_config(workdir / "lab.toml"))
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def jupyter(workdir: Path, lab: Any) -> Iterator[str]:
    """JupyterLab on a free loopback port with a token; yields the notebook's URL. Stopped by pid."""
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, P4CF_CONFIG=str(workdir / "lab.toml"), P4CF_RESULTS_DIR=str(workdir / "results"),
               JUPYTER_CONFIG_DIR=str(workdir / "jupyter-config"), JUPYTER_RUNTIME_DIR=str(workdir / "jupyter-runtime"))
    log = open(workdir / "jupyterlab.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={workdir / 'notebooks'}",
         f"--LabApp.user_settings_dir={workdir / 'lab-settings'}", f"--LabApp.workspaces_dir={workdir / 'lab-ws'}",
         "--ServerApp.port_retries=0"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"JupyterLab did not start:\n{(workdir / 'jupyterlab.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/lab/tree/{NOTEBOOK}?token={token}"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


def test_migration_notebook_in_chromium(jupyter: str, workdir: Path) -> None:
    from playwright.sync_api import sync_playwright

    shot = artifacts_dir() / "browser-03_migration.png"
    (artifacts_dir() / "browser-03_migration-failure.png").unlink(missing_ok=True)  # from an older run
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(str(workdir / "chromium-profile"), headless=True,
                                                        executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                        viewport={"width": 1400, "height": 1000})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(60_000)
            try:
                drive(page, jupyter, shot)
            except BaseException:
                page.screenshot(path=str(artifacts_dir() / "browser-03_migration-failure.png"))
                raise
        finally:
            context.close()


def drive(page: Any, url: str, shot: Path) -> None:
    """Open the notebook, Run All, then Migrate; screenshots of the panel and the page."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    from p4cf_kit.notebook import migration_unavailable_reason
    page.goto(url)
    page.locator(".jp-NotebookPanel").wait_for()
    select = page.locator(".jp-Dialog button", has_text="Select")  # JupyterLab may ask for the kernel
    try:
        select.wait_for(timeout=10_000)
        select.click()
    except PlaywrightTimeout:
        pass
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=60_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    # Run All is done when the last cell printed where the results are
    expect(page.locator(".jp-OutputArea-output", has_text="results in")).to_have_count(1, timeout=240_000)
    panel = page.locator(".widget-vbox", has_text="Live migration of a backend").first
    panel.scroll_into_view_if_needed()
    button = panel.locator("button", has_text="Migrate")
    reason = migration_unavailable_reason()
    if reason is not None:
        expect(panel).to_contain_text("migration needs")
        expect(button).to_be_disabled()
        panel.screenshot(path=str(shot))
        pytest.skip(f"{reason} (panel shows it; screenshot {shot})")
    expect(panel.locator(".p4cf-result-table")).to_contain_text("h2 → h4")  # made by Run All
    expect(button).to_be_enabled(timeout=60_000)
    button.click()
    expect(panel.locator(".p4cf-result-table tbody tr")).to_have_count(2, timeout=240_000)
    expect(panel.locator(".p4cf-result-table")).to_contain_text("h4 → h2")
    image = panel.locator("img")
    expect(image).to_be_visible()
    assert image.evaluate("img => img.naturalWidth") > 300
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(shot))
    page.screenshot(path=str(artifacts_dir() / "browser-03_migration-page.png"))
