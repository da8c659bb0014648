"""The notebooks' panels in a real browser: JupyterLab on 127.0.0.1, headless Chromium via Playwright.

02_load_balancing.ipynb: it opens without unsaved changes; after Run All the pool panel is
live (the lab stays up); Apply with a change says before how many open connections break and
after what happened to them; an invalid change (no host ticked) is refused with the real
pool and the boxes kept; Tear down lets go of the lab (the test's, so it stays up).
03_migration.ipynb: Run All, then Migrate in the panel; the result table and the plot
appear. Before the kit can migrate, the panel says so instead (button disabled).
Screenshots are saved under $P4CF_TEST_ARTIFACTS (default: test-artifacts/). The
JupyterLab server is stopped by its pid; the lab belongs to the tests, so no notebook
tears it down. Run under the shared test lock (it drives a lab).
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p4cf_kit.paths import NOTEBOOKS_DIR, REPO_ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOTEBOOK = "03_migration.ipynb"
POOL_NOTEBOOK = "02_load_balancing.ipynb"
CONFIG = """\
[lab]
name = "uit"
vip = "10.75.0.100"
subnet_pattern = "10.75.{n}.0/24"
"""

pytestmark = [pytest.mark.podman, pytest.mark.netns, pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason="chromium is missing: run `make test-system` (scripts/setup-system.sh "
                                        "--test installs Debian's chromium; `make test` does it first)")]


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
    for name in (POOL_NOTEBOOK, NOTEBOOK):
        shutil.copy(NOTEBOOKS_DIR / name, work / "notebooks" / name)
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
        yield f"http://127.0.0.1:{port}/lab/workspaces/{{workspace}}/tree/{{notebook}}?token={token}"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


def in_chromium(workdir: Path, name: str, drive: Any) -> None:
    """Run `drive(page)` in a fresh headless Chromium; a failure leaves browser-<name>-failure.png."""
    from playwright.sync_api import sync_playwright

    failure = artifacts_dir() / f"browser-{name}-failure.png"
    failure.unlink(missing_ok=True)  # from an older run
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(str(workdir / f"chromium-{name}"), headless=True,
                                                        executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                        viewport={"width": 1400, "height": 1000})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(60_000)
            try:
                drive(page)
            except BaseException:
                page.screenshot(path=str(failure))
                raise
        finally:
            context.close()


def open_notebook(page: Any, url: str) -> None:
    """Open a notebook in its own workspace and wait until its kernel is idle."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect
    page.goto(url)
    page.locator(".jp-NotebookPanel").first.wait_for()
    select = page.locator(".jp-Dialog button", has_text="Select")  # JupyterLab may ask for the kernel
    try:
        select.wait_for(timeout=10_000)
        select.click()
    except PlaywrightTimeout:
        pass
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=60_000)


def run_all(page: Any, done_text: str, timeout_ms: int = 240_000) -> None:
    """Run All Cells, and wait until the output `done_text` (printed by the last cell) appears."""
    from playwright.sync_api import expect
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    expect(page.locator(".jp-OutputArea-output", has_text=done_text)).to_have_count(1, timeout=timeout_ms)


def test_pool_notebook_in_chromium(jupyter: str, workdir: Path, lab: Any) -> None:
    """Run All leaves the pool panel live; Apply with a change; an invalid change; Tear down."""
    from p4cf_kit.notebook import restore_pool
    try:
        in_chromium(workdir, "02_load_balancing",
                    lambda page: drive_pool_panel(page, jupyter.format(workspace="t02", notebook=POOL_NOTEBOOK)))
    finally:
        # The notebook's newer session took the primary role (election ids grow with time) and
        # has left: this older session is a backup now, so open a new one before writing.
        lab.close()
        restore_pool(lab)  # for the migration notebook: h4 free again


def checkbox(panel: Any, host: str) -> Any:
    return panel.locator(".widget-checkbox", has_text=host).locator("input[type=checkbox]")


def drive_pool_panel(page: Any, url: str) -> None:
    from playwright.sync_api import expect
    open_notebook(page, url)
    page.wait_for_timeout(2_000)  # anything JupyterLab changes on open has happened by now
    expect(page.locator(".lm-TabBar-tab.jp-mod-dirty")).to_have_count(0)  # opens without unsaved changes
    run_all(page, "lab left up")
    panel = page.locator(".widget-vbox", has_text="Backend pool of VIP").first
    panel.scroll_into_view_if_needed()
    apply = panel.locator("button", has_text="Apply")
    # Run All left the lab up: every control live, the change Run All made reported per connection
    expect(apply).to_be_enabled()
    expect(checkbox(panel, "h3")).to_be_enabled()
    expect(panel).to_contain_text("pool now (read from the switch): h2 h3 h4")
    expect(panel).to_contain_text("pool is now h2 h3 h4 (was h2 h3); of 16 open connections")
    expect(panel).not_to_contain_text("stopped")
    image = panel.locator("img")
    assert image.evaluate("img => img.naturalWidth") > 300
    panel.screenshot(path=str(artifacts_dir() / "browser-02_pool-after-run-all.png"))
    # a change: the hint says before Apply what it will do to the open connections (the last cell
    # waited for the live client's connections, so the panel sees them all)
    expect(panel).to_contain_text("client traffic attached (16 connections open)")
    checkbox(panel, "h3").uncheck()
    expect(panel).to_contain_text("Apply (h2 h3 h4 → h2 h4) will break")  # h3's connections at least
    expect(panel).to_contain_text("open connections")
    panel.screenshot(path=str(artifacts_dir() / "browser-02_pool-hint.png"))
    apply.click()
    expect(panel).to_contain_text("pool is now h2 h4 (was h2 h3 h4); of 16 open connections", timeout=90_000)
    expect(panel).to_contain_text("pool now (read from the switch): h2 h4")
    expect(apply).to_be_enabled()
    panel.screenshot(path=str(artifacts_dir() / "browser-02_pool-applied.png"))
    # an invalid change: refused, the real pool stays visible and the boxes as they were
    checkbox(panel, "h2").uncheck()
    checkbox(panel, "h4").uncheck()
    expect(panel).to_contain_text("no host ticked")
    apply.click()
    expect(panel).to_contain_text("no host was ticked: the VIP needs at least one backend; the pool stays h2 h4")
    expect(panel).to_contain_text("pool now (read from the switch): h2 h4")
    expect(panel).not_to_contain_text("no host ticked")  # the hint is gone with the boxes restored
    for host, ticked in (("h2", True), ("h3", False), ("h4", True)):
        (expect(checkbox(panel, host)).to_be_checked() if ticked else
         expect(checkbox(panel, host)).not_to_be_checked())
    panel.screenshot(path=str(artifacts_dir() / "browser-02_pool-invalid.png"))
    # tearing down is an explicit act; the lab is the test's, so the panel lets go and says so
    panel.locator("button", has_text="Tear down").click()
    expect(panel).to_contain_text("let go of lab 'uit'", timeout=60_000)
    expect(panel).to_contain_text("no longer followed")
    expect(apply).to_be_disabled()
    panel.screenshot(path=str(artifacts_dir() / "browser-02_pool-let-go.png"))
    page.screenshot(path=str(artifacts_dir() / "browser-02_load_balancing-page.png"))


def test_migration_notebook_in_chromium(jupyter: str, workdir: Path) -> None:
    shot = artifacts_dir() / "browser-03_migration.png"
    in_chromium(workdir, "03_migration",
                lambda page: drive(page, jupyter.format(workspace="t03", notebook=NOTEBOOK), shot))


def drive(page: Any, url: str, shot: Path) -> None:
    """Open the notebook, Run All, then Migrate; screenshots of the panel and the page."""
    from playwright.sync_api import expect

    from p4cf_kit.notebook import migration_unavailable_reason
    open_notebook(page, url)
    run_all(page, "results in")  # Run All is done when the last cell printed where the results are
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
